"""``envoy.config.listener.v3.Listener`` → ``ListenerConfig`` (the inverse of the encoder's).

A plait Listener has a socket address with an IP address, ``traffic_direction`` INBOUND or
OUTBOUND, and exactly one filter chain with exactly one network filter, told apart by its
``typed_config`` type: an ``HttpConnectionManager`` that takes its routes over RDS (ADS) and
whose ``http_filters`` are plait filters followed by the Envoy router, last; or a
``TcpProxy`` to one cluster. TLS is a ``DownstreamTlsContext`` with one certificate and key
given as file names and ALPN ``h2, http/1.1``. Anything else set (``use_original_dst``, a
second chain, an inline ``route_config``, a non-plait HTTP filter, ...) is refused, naming
the field.

Absent timeouts take plait's defaults (our encoder always sets them). The sidecar-wide
settings (``max_request_headers_kb``, ``access_log``, ``tracing``: ``_decode_telemetry``) come
back per listener in :class:`Decoded`; ``decode_mesh`` checks that the listeners agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.http.router.v3 import router_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import (  # type: ignore[import-untyped]
    tcp_proxy_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # type: ignore[import-untyped]
from xds.type.v3 import typed_struct_pb2  # type: ignore[import-untyped]

from plait.core.config import (
    Direction,
    FilterEntry,
    ListenerConfig,
    ListenerTLS,
    Protocol,
    TracingConfig,
)
from plait.core.config._fields import Loc
from plait.sdk import FilterSpec

from ._decode_base import (
    Message,
    at,
    decode_filter,
    fact,
    facts_of,
    ip_address,
    is_ads,
    only,
    sub,
    timeouts,
    unpack,
)
from ._decode_mtls import decode_chains
from ._decode_telemetry import AccessLogSetting, decode_access_log, decode_tracing
from .wire import ALPN, FILTER_TYPE_URL, from_struct
from .wire import seconds as seconds_of

__all__ = ["Decoded", "decode_listener"]

_DIRECTION: Final = {base_pb2.INBOUND: Direction.INBOUND, base_pb2.OUTBOUND: Direction.OUTBOUND}
_HCM_TYPE: Final = hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_TYPE: Final = tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_HCM_FIELDS: Final = ("stat_prefix", "rds", "http_filters", "request_headers_timeout",
                      "stream_idle_timeout", "common_http_protocol_options", "request_timeout",
                      "max_request_headers_kb", "access_log", "tracing")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decoded:
    listener: ListenerConfig
    order: int
    max_request_headers_kb: int | None
    """``None`` for a tcp listener (no HTTP)."""
    access_log: AccessLogSetting | None
    tracing: TracingConfig | None = None
    http: bool = True


def decode_listener(msg: Message, filter_types: Mapping[str, FilterSpec[Any]]) -> Decoded:
    """Raises ``ConfigError`` naming the Listener and the field plait cannot honour."""
    loc = at(f"Listener {msg.name}")
    only(
        msg,
        ("name", "address", "traffic_direction", "filter_chains", "listener_filters", "metadata"),
        loc,
    )
    facts = facts_of(msg, loc)
    direction = _DIRECTION.get(msg.traffic_direction)
    if direction is None:
        raise sub(loc, "traffic_direction").expected("INBOUND or OUTBOUND", "UNSPECIFIED")
    only(msg.address, ("socket_address",), sub(loc, "address"))
    bind, port = ip_address(msg.address.socket_address, sub(loc, "address.socket_address"))
    chain, mtls = decode_chains(msg, facts, loc)
    if mtls is not None and direction is not Direction.INBOUND:
        raise sub(loc, "filter_chains").error("peer authentication is for inbound listeners")
    cloc = sub(loc, "filter_chains[0]")
    only(chain, ("filters", "transport_socket"), cloc)
    if not chain.filters:
        raise sub(cloc, "filters").expected("a network filter", "none")
    last = len(chain.filters) - 1
    network = chain.filters[last]
    nloc = sub(cloc, f"filters[{last}] {network.name!r}")
    only(network, ("name", "typed_config"), nloc)
    tls = None
    if chain.HasField("transport_socket"):
        tls = _tls(chain.transport_socket, sub(cloc, "transport_socket"))
    common = {
        "name": msg.name,
        "direction": direction,
        "bind": bind,
        "port": port,
        "tls": tls,
        "mtls": mtls,
        "request_metrics": fact(facts, "request_metrics", bool, True, loc),
    }
    kind = network.typed_config.TypeName()
    if kind == _HCM_TYPE:
        if last:
            raise sub(cloc, "filters").expected("one network filter", len(chain.filters))
        hcm = unpack(network.typed_config, hcm_pb2.HttpConnectionManager, nloc)
        return _http(hcm, common, facts, filter_types, loc)
    if kind == _TCP_TYPE:
        proxy = unpack(network.typed_config, tcp_proxy_pb2.TcpProxy, nloc)
        entries = _plait_filters(chain.filters[:last], "filters", filter_types, cloc)
        for i, entry in enumerate(entries):
            if entry.spec.connection is None:
                raise sub(cloc, f"filters[{i}] {entry.name!r}").error(
                    f"filter type {entry.spec.name!r} decides requests; a tcp listener runs "
                    "only filters that decide connections"
                )
        return _tcp(proxy, common, facts, loc, entries)
    raise nloc.error(
        f"unknown network filter type {kind or 'none'!r} (plait runs "
        "envoy.filters.network.http_connection_manager and .tcp_proxy)"
    )


def _http(
    hcm: Message,
    common: dict[str, Any],
    facts: Mapping[str, Any],
    filter_types: Mapping[str, FilterSpec[Any]],
    loc: Loc,
) -> Decoded:
    only(hcm, _HCM_FIELDS, loc)
    protocol = _protocol(facts, loc, http=True)
    if not hcm.HasField("rds") or not is_ads(hcm.rds.config_source):
        raise sub(loc, "rds").error("expected routes over RDS from the ADS stream")
    only(hcm.rds.config_source, ("ads", "resource_api_version"), sub(loc, "rds.config_source"))
    idle = _idle(hcm, loc)
    standard: dict[str, float | None] = {
        "request": seconds_of(hcm.request_timeout) if hcm.HasField("request_timeout") else None
    }
    if idle is not None:
        standard["idle"] = idle
    if hcm.HasField("request_headers_timeout"):
        standard["request_headers"] = seconds_of(hcm.request_headers_timeout)
    listener = ListenerConfig(
        **common,
        protocol=protocol,
        route_table=hcm.rds.route_config_name,
        filters=_http_filters(hcm.http_filters, filter_types, loc),
        timeouts=timeouts(standard, facts, loc),
    )
    kb = hcm.max_request_headers_kb.value if hcm.HasField("max_request_headers_kb") else 60
    return Decoded(
        listener,
        _order(facts, loc),
        kb,
        decode_access_log(hcm.access_log, loc),
        decode_tracing(hcm, loc),
    )


def _tcp(
    proxy: Message,
    common: dict[str, Any],
    facts: Mapping[str, Any],
    loc: Loc,
    filters: tuple[FilterEntry, ...],
) -> Decoded:
    ploc = sub(loc, "tcp_proxy")
    only(proxy, ("stat_prefix", "cluster", "idle_timeout", "access_log"), ploc)
    _protocol(facts, loc, http=False)
    if not proxy.cluster:
        raise sub(ploc, "cluster").error("expected a cluster")
    if common["tls"] is not None:
        raise sub(loc, "transport_socket").error("a tcp listener relays bytes; it takes no TLS")
    standard = {"idle": seconds_of(proxy.idle_timeout)} if proxy.HasField("idle_timeout") else {}
    listener = ListenerConfig(
        **common,
        protocol=Protocol.TCP,
        route_table="",
        timeouts=timeouts(standard, facts, loc),
        tcp_cluster=proxy.cluster,
        filters=filters,
    )
    return Decoded(
        listener, _order(facts, loc), None, decode_access_log(proxy.access_log, ploc), http=False
    )


def _protocol(facts: Mapping[str, Any], loc: Loc, *, http: bool) -> Protocol:
    value = fact(facts, "protocol", str, "http" if http else "tcp", loc)
    try:
        protocol = Protocol(value)
    except ValueError:
        protocol = None
    if protocol is None or protocol.is_http != http:
        what = "http, http2 or grpc" if http else "tcp"
        raise sub(loc, "metadata.plait.protocol").expected(what, value)
    return protocol


def _order(facts: Mapping[str, Any], loc: Loc) -> int:
    return fact(facts, "order", int, 0, loc)


def _idle(hcm: Message, loc: Loc) -> float | None:
    idle = None
    if hcm.HasField("common_http_protocol_options"):
        opts = hcm.common_http_protocol_options
        only(opts, ("idle_timeout",), sub(loc, "common_http_protocol_options"))
        idle = seconds_of(opts.idle_timeout) if opts.HasField("idle_timeout") else None
    if hcm.HasField("stream_idle_timeout"):
        stream = seconds_of(hcm.stream_idle_timeout)
        if idle is not None and stream != idle:
            raise sub(loc, "stream_idle_timeout").error(
                "plait has one idle timeout: expected the connection idle_timeout "
                f"({idle}s), got {stream}s"
            )
        idle = stream
    return idle


def _http_filters(
    filters: Any, filter_types: Mapping[str, FilterSpec[Any]], loc: Loc
) -> tuple[FilterEntry, ...]:
    if not filters or filters[-1].typed_config.TypeName() != router_pb2.Router.DESCRIPTOR.full_name:
        raise sub(loc, "http_filters").error("expected envoy.filters.http.router last")
    out = _plait_filters(filters[:-1], "http_filters", filter_types, loc)
    router = filters[-1]
    rloc = sub(loc, f"http_filters[{len(filters) - 1}]")
    only(router, ("name", "typed_config"), rloc)
    only(unpack(router.typed_config, router_pb2.Router, rloc), (), rloc)
    return out


def _plait_filters(
    filters: Any, field: str, filter_types: Mapping[str, FilterSpec[Any]], loc: Loc
) -> tuple[FilterEntry, ...]:
    """Plait filters carried as ``TypedStruct``s (HTTP filters, or a tcp listener's
    network filters before its ``TcpProxy``)."""
    out: list[FilterEntry] = []
    for i, f in enumerate(filters):
        floc = sub(loc, f"{field}[{i}] {f.name!r}")
        only(f, ("name", "typed_config"), floc)
        typed = unpack(f.typed_config, typed_struct_pb2.TypedStruct, floc)
        if typed.type_url != FILTER_TYPE_URL:
            raise floc.error(
                f"not a plait filter (type_url {typed.type_url!r}, expected {FILTER_TYPE_URL!r})"
            )
        out.append(decode_filter(from_struct(typed.value), f.name, filter_types, floc))
    return tuple(out)


def _tls(socket: Message, loc: Loc) -> ListenerTLS:
    only(socket, ("name", "typed_config"), loc)
    ctx = unpack(socket.typed_config, tls_pb2.DownstreamTlsContext, loc)
    only(ctx, ("common_tls_context",), loc)
    common = ctx.common_tls_context
    cloc = sub(loc, "common_tls_context")
    only(common, ("tls_certificates", "alpn_protocols"), cloc)
    if list(common.alpn_protocols) != list(ALPN):
        raise sub(cloc, "alpn_protocols").expected(", ".join(ALPN), list(common.alpn_protocols))
    if len(common.tls_certificates) != 1:
        raise sub(cloc, "tls_certificates").expected(
            "one certificate", len(common.tls_certificates)
        )
    cert = common.tls_certificates[0]
    only(cert, ("certificate_chain", "private_key"), sub(cloc, "tls_certificates[0]"))
    files = []
    for key in ("certificate_chain", "private_key"):
        source = getattr(cert, key)
        if source.WhichOneof("specifier") != "filename":
            raise sub(cloc, f"tls_certificates[0].{key}").error("expected a filename")
        files.append(str(source.filename))
    return ListenerTLS(cert_file=files[0], key_file=files[1])
