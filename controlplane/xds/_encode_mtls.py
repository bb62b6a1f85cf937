"""Inbound peer authentication → filter chains, the way Envoy and Istio carry it.

* ``STRICT``: the one filter chain's ``transport_socket`` is a ``DownstreamTlsContext`` with
  ``require_client_certificate: true`` whose certificate and validation context are SDS
  secrets over ADS named ``default`` and ``ROOTCA`` (Istio's names; ``wire.SDS_CERT`` and
  ``wire.SDS_ROOTS``): the sidecar's own identity, not files.
* ``PERMISSIVE``: two filter chains with the same network filter, matched on
  ``filter_chain_match.transport_protocol``: ``tls`` (with that socket) and ``raw_buffer``
  (without), and the ``envoy.filters.listener.tls_inspector`` listener filter that tells
  them apart. This is Envoy's own way to serve both on one port, so the LDS plait sends
  means the same thing to an Envoy; plait metadata would have been shorter but private.
* ``DISABLE``: one plaintext chain, and ``metadata.plait.mtls: DISABLE``. Envoy's shape
  cannot tell "plaintext because a policy says so" from "no policy" (which a plait sidecar
  turns into PERMISSIVE once it has an identity): the one case plait metadata carries.

No ``PeerAuthentication`` at all is a plaintext chain without that metadata.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.config.listener.v3 import (  # type: ignore[import-untyped]
    listener_components_pb2,
)
from envoy.extensions.filters.listener.tls_inspector.v3 import (  # type: ignore[import-untyped]
    tls_inspector_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import (  # type: ignore[import-untyped]
    secret_pb2,
    tls_pb2,
)

from plait.core.config import MtlsMode
from plait.core.xds.wire import (
    ALPN,
    MTLS_FACT,
    SDS_CERT,
    SDS_ROOTS,
    TLS_INSPECTOR,
    TLS_SOCKET,
    TRANSPORT_RAW,
    TRANSPORT_TLS,
)

from ._encode_base import Message, ads_source, pack

__all__ = ["mtls_chains"]


def mtls_socket(http: bool) -> Message:
    common = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[
            secret_pb2.SdsSecretConfig(name=SDS_CERT, sds_config=ads_source())
        ],
        validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(
            name=SDS_ROOTS, sds_config=ads_source()
        ),
        alpn_protocols=list(ALPN) if http else [],
    )
    ctx = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    ctx.require_client_certificate.value = True
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(ctx))


def mtls_chains(
    mode: MtlsMode | None, chain: Message, http: bool, facts: dict[str, object]
) -> tuple[list[Message], list[Message]]:
    """``(filter_chains, listener_filters)`` for ``chain`` (plaintext) under ``mode``."""
    if mode is MtlsMode.STRICT:
        chain.transport_socket.CopyFrom(mtls_socket(http))
        return [chain], []
    if mode is MtlsMode.PERMISSIVE:
        tls = listener_components_pb2.FilterChain()
        tls.CopyFrom(chain)
        tls.filter_chain_match.transport_protocol = TRANSPORT_TLS
        tls.transport_socket.CopyFrom(mtls_socket(http))
        chain.filter_chain_match.transport_protocol = TRANSPORT_RAW
        inspector = listener_components_pb2.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
        )
        return [tls, chain], [inspector]
    if mode is MtlsMode.DISABLE:
        facts[MTLS_FACT] = MtlsMode.DISABLE.value
    return [chain], []
