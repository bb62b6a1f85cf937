"""The sidecar's mesh identity: its certificate and trust bundle as TLS contexts."""

from .store import ALPN, CertStore, Leaf, peer_spiffe_id, spiffe_ids_of

__all__ = ["ALPN", "CertStore", "Leaf", "peer_spiffe_id", "spiffe_ids_of"]
