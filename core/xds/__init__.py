"""xDS v3 on the sidecar side: the ADS client and xDS → MeshConfig decoding.

:mod:`plait.core.xds.wire` is the public wire contract shared with the control plane's
encoder (type URLs, plait's metadata and filter encoding, the exact conversions, the
resilience config); everything else here is the sidecar's own.
"""
