"""How inbound peer authentication travels in a Listener (LDS), the way Envoy and Istio do it.

* ``STRICT``: the one filter chain's ``transport_socket`` is a ``DownstreamTlsContext`` with
  ``require_client_certificate: true`` whose certificate and validation context are SDS
  secrets over ADS named :data:`SDS_CERT` (``default``) and :data:`SDS_ROOTS` (``ROOTCA``),
  Istio's names: the sidecar's own identity, not files.
* ``PERMISSIVE``: two filter chains with the same network filter, matched on
  ``filter_chain_match.transport_protocol``: ``tls`` (with that socket) and ``raw_buffer``
  (without), and the ``envoy.filters.listener.tls_inspector`` listener filter that tells
  them apart. This is exactly what Envoy needs to serve both on one port, so an Envoy
  reading plait's LDS would do the same thing plait does.
* ``DISABLE``: one plaintext chain, and ``metadata.plait.mtls: DISABLE``. Envoy's shape
  cannot tell "plaintext because a policy says so" from "no policy" (which plait turns into
  PERMISSIVE once the sidecar has an identity), hence the plait metadata for that one case.

An absent ``PeerAuthentication`` is a plaintext chain without that metadata.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MTLS_FACT", "SDS_CERT", "SDS_ROOTS", "TLS_INSPECTOR", "TRANSPORT_RAW", "TRANSPORT_TLS"]

SDS_CERT: Final = "default"
SDS_ROOTS: Final = "ROOTCA"
TLS_INSPECTOR: Final = "envoy.filters.listener.tls_inspector"
TRANSPORT_TLS: Final = "tls"
TRANSPORT_RAW: Final = "raw_buffer"
MTLS_FACT: Final = "mtls"
