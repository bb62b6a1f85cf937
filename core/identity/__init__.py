"""The sidecar's mesh identity: its certificate and trust bundle as TLS contexts, and the
agent that gets them from the control plane's CA (``agent.py``, imported on its own: it
is only needed when the sidecar has a join token)."""

from .store import ALPN, CertStore, Leaf, peer_spiffe_id, spiffe_ids_of

__all__ = ["ALPN", "CertStore", "Leaf", "peer_spiffe_id", "spiffe_ids_of"]
