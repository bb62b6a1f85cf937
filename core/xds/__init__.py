"""xDS v3 on the sidecar side: the ADS client and xDS → MeshConfig decoding."""
