"""``ListenerConfig`` → ``envoy.config.listener.v3.Listener`` (LDS).

One Listener per plait listener: ``address`` = (bind, port), ``traffic_direction``, and one
filter chain ending in one terminal network filter:

* HTTP (``http``/``http2``/``grpc``): an ``HttpConnectionManager`` whose routes come over RDS
  (``rds.route_config_name`` = ``ListenerConfig.route_table``, ADS config source), codec
  ``AUTO``, and ``http_filters`` = the listener's plait filters (``TypedStruct`` of type
  :data:`~plait.core.xds.wire.FILTER_TYPE_URL`) followed by the terminal Envoy router.
  Timeouts: ``request`` → ``request_timeout`` (absent: none, Envoy's default too),
  ``request_headers`` → ``request_headers_timeout``, ``idle`` →
  ``common_http_protocol_options.idle_timeout`` and ``stream_idle_timeout`` (Envoy's 5 min
  stream idle default would otherwise cut streams plait keeps). The mesh-wide
  ``max_request_headers_kb`` and ``access_log`` are repeated on every listener.
* ``tcp``: a ``TcpProxy`` to ``ListenerConfig.tcp_cluster``; ``idle`` → ``idle_timeout``.
  The listener's filters (connection filters: authorization) go before it as network
  filters, each a ``TypedStruct`` like an HTTP filter's.
* TLS: the chain's ``transport_socket`` is a ``DownstreamTlsContext`` with the certificate and
  key as file names and ALPN ``h2, http/1.1``.
* Inbound peer authentication (``ListenerConfig.mtls``): ``_encode_mtls``.

``metadata["plait"]``: ``protocol`` (``http2`` and ``grpc`` look alike on the wire), ``order``
(the listener's index, so the decoded tuple keeps its order whatever order LDS delivers
resources in), ``timeouts`` the standard fields do not carry (``drain`` above all), and
``request_metrics: false`` for a listener whose requests a ``Telemetry`` keeps out of the
request metrics (Envoy has no field for it: Istio leaves its stats filter out).
"""

from __future__ import annotations

from typing import Final

from envoy.config.core.v3 import (  # type: ignore[import-untyped]
    address_pb2,
    base_pb2,
    protocol_pb2,
)
from envoy.config.listener.v3 import (  # type: ignore[import-untyped]
    api_listener_pb2,
    listener_components_pb2,
    listener_pb2,
)
from envoy.extensions.filters.http.router.v3 import router_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import (  # type: ignore[import-untyped]
    tcp_proxy_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import (  # type: ignore[import-untyped]
    common_pb2,
    tls_pb2,
)
from xds.type.v3 import typed_struct_pb2  # type: ignore[import-untyped]

from plait.core.config import (
    Direction,
    FilterEntry,
    ListenerConfig,
    ListenerTLS,
    MeshConfig,
    Protocol,
)
from plait.core.xds.wire import (
    ALPN,
    FILTER_TYPE_URL,
    HCM,
    ROUTER,
    TCP_PROXY,
    TLS_SOCKET,
    duration,
    timeouts_extra,
    to_struct,
)

from ._encode_base import Message, ads_source, filter_fields, metadata, pack
from ._encode_mtls import mtls_chains
from ._encode_telemetry import access_logs, tracing

__all__ = ["encode_api_listener", "encode_listener"]

_DIRECTION: Final = {
    Direction.INBOUND: base_pb2.INBOUND,
    Direction.OUTBOUND: base_pb2.OUTBOUND,
}
_HTTP_CARRIED: Final = frozenset({"request", "request_headers", "idle"})
_TCP_CARRIED: Final = frozenset({"idle"})


def encode_listener(lis: ListenerConfig, cfg: MeshConfig, order: int) -> Message:
    """The Listener for ``lis``; ``cfg`` gives the mesh-wide HTTP settings, ``order`` its index.

    Raises:
        ConfigError: a filter config that cannot travel as JSON (names the filter).
    """
    tcp = lis.protocol is Protocol.TCP
    where = f"Listener {lis.name}"
    facts: dict[str, object] = {"protocol": lis.protocol.value, "order": order}
    if extra := timeouts_extra(lis.timeouts, _TCP_CARRIED if tcp else _HTTP_CARRIED):
        facts["timeouts"] = extra
    if not lis.request_metrics:
        facts["request_metrics"] = False
    if tcp:
        network_filters = [
            *(
                listener_components_pb2.Filter(
                    name=e.name, typed_config=pack(_typed(e, f"{where}: filters[{i}] {e.name!r}"))
                )
                for i, e in enumerate(lis.filters)
            ),
            _tcp_proxy(lis, cfg),
        ]
    else:
        network_filters = [_hcm_filter(lis, cfg, where)]
    chain = listener_components_pb2.FilterChain(filters=network_filters)
    if lis.tls is not None:
        chain.transport_socket.CopyFrom(_tls_socket(lis.tls))
    chains, listener_filters = mtls_chains(lis.mtls, chain, not tcp, facts)
    return listener_pb2.Listener(
        name=lis.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=lis.bind, port_value=lis.port)
        ),
        traffic_direction=_DIRECTION[lis.direction],
        filter_chains=chains,
        listener_filters=listener_filters,
        metadata=metadata(facts, where),
    )


def encode_api_listener(name: str, route_config: str) -> Message:
    """A Listener for gRPC's proxyless xDS client (``xds:///name``).

    gRPC reads only ``api_listener``: an ``HttpConnectionManager`` taking ``route_config``
    over RDS (ADS), with the router as its only (and so last) HTTP filter.
    """
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_config),
        http_filters=[_router()],
    )
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm))
    )


def _hcm_filter(lis: ListenerConfig, cfg: MeshConfig, where: str) -> Message:
    t = lis.timeouts
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=lis.name,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=lis.route_table),
        http_filters=[
            *(
                _plait_filter(e, f"{where}: http_filters[{i}] {e.name!r}")
                for i, e in enumerate(lis.filters)
            ),
            _router(),
        ],
        request_headers_timeout=duration(t.request_headers),
        stream_idle_timeout=duration(t.idle),
        common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
            idle_timeout=duration(t.idle)
        ),
    )
    hcm.max_request_headers_kb.value = cfg.max_request_headers_kb
    if t.request is not None:
        hcm.request_timeout.CopyFrom(duration(t.request))
    hcm.access_log.extend(access_logs(cfg))
    if cfg.tracing is not None:
        hcm.tracing.CopyFrom(tracing(cfg.tracing))
    return listener_components_pb2.Filter(name=HCM, typed_config=pack(hcm))


def _plait_filter(entry: FilterEntry, where: str) -> Message:
    return hcm_pb2.HttpFilter(name=entry.name, typed_config=pack(_typed(entry, where)))


def _typed(entry: FilterEntry, where: str) -> Message:
    return typed_struct_pb2.TypedStruct(
        type_url=FILTER_TYPE_URL, value=to_struct(filter_fields(entry, where))
    )


def _router() -> Message:
    return hcm_pb2.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router()))


def _tcp_proxy(lis: ListenerConfig, cfg: MeshConfig) -> Message:
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=lis.name,
        cluster=lis.tcp_cluster or "",
        idle_timeout=duration(lis.timeouts.idle),
    )
    proxy.access_log.extend(access_logs(cfg))
    return listener_components_pb2.Filter(name=TCP_PROXY, typed_config=pack(proxy))


def _tls_socket(tls: ListenerTLS) -> Message:
    cert = common_pb2.TlsCertificate()
    cert.certificate_chain.filename = tls.cert_file
    cert.private_key.filename = tls.key_file
    ctx = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificates=[cert], alpn_protocols=list(ALPN)
        )
    )
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(ctx))
