"""``Cluster`` + ``ClusterLoadAssignment`` → ``plait.core.config.Cluster`` (inverse of the encoder).

A plait Cluster is ``type: EDS`` over ADS with the default ``ROUND_ROBIN`` policy (plait's
balancer); a ``LEAST_REQUEST`` policy, health checks, a transport socket and the like are
refused. The BackendTrafficPolicy is ``metadata.plait.policy`` parsed by
``parse_traffic_policy``; ``circuit_breakers`` must be exactly its mirror (none without one).
The upstream protocol is ``metadata.plait.protocol``, checked against
``HttpProtocolOptions.explicit_http_config`` (HTTP/2 for ``http2``/``grpc``); without metadata
it is ``http2`` or ``http`` from those options.

Endpoints: at most one locality (plait has no locality-aware balancing). An ``LbEndpoint``
whose ``health_status`` is neither ``HEALTHY`` nor ``UNKNOWN`` is left out: plait sends
nothing to an endpoint the control plane says is unhealthy or draining. Addresses must be IP
addresses; ``load_balancing_weight`` (default 1) is the endpoint weight; labels come from
``metadata.plait.labels``, the SPIFFE ID the endpoint must present from
``metadata.plait.identity`` (checked as a SPIFFE ID) and whether it accepts mesh mTLS from
``metadata.plait.mtls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import health_check_pb2  # type: ignore[import-untyped]
from envoy.extensions.upstreams.http.v3 import (  # type: ignore[import-untyped]
    http_protocol_options_pb2 as upstream_http,
)

from plait.core.config import Cluster, Endpoint, Protocol, Timeouts
from plait.core.config._fields import Loc
from plait.core.config._policy import TrafficPolicy
from plait.sdk import InvalidSpiffeId, SpiffeId

from ._decode_base import (
    Message,
    at,
    fact,
    facts_of,
    ip_address,
    is_ads,
    only,
    sub,
    timeouts,
    unpack,
)
from ._resilience import circuit_breakers, policy_from_facts
from .wire import HTTP_PROTOCOL_OPTIONS, seconds

__all__ = ["ClusterHead", "decode_cluster", "decode_endpoints"]

_SERVES: Final = frozenset({health_check_pb2.HEALTHY, health_check_pb2.UNKNOWN})
_FIELDS: Final = ("name", "type", "eds_cluster_config", "connect_timeout", "lb_policy",
                  "typed_extension_protocol_options", "metadata", "circuit_breakers")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClusterHead:
    """A decoded Cluster waiting for its endpoints (the ClusterLoadAssignment ``eds_name``)."""

    name: str
    eds_name: str
    protocol: Protocol
    timeouts: Timeouts
    max_idle_per_endpoint: int
    policy: TrafficPolicy | None = None

    def with_endpoints(self, endpoints: tuple[Endpoint, ...]) -> Cluster:
        return Cluster(
            name=self.name,
            protocol=self.protocol,
            endpoints=endpoints,
            timeouts=self.timeouts,
            max_idle_per_endpoint=self.max_idle_per_endpoint,
            policy=self.policy,
        )


def decode_cluster(msg: Message) -> ClusterHead:
    """Raises ``ConfigError`` naming the Cluster and what plait cannot honour."""
    loc = at(f"Cluster {msg.name}")
    only(msg, _FIELDS, loc)
    if msg.WhichOneof("cluster_discovery_type") != "type" or msg.type != cluster_pb2.Cluster.EDS:
        raise sub(loc, "type").error("expected EDS (plait clusters take endpoints over ADS)")
    if msg.lb_policy != cluster_pb2.Cluster.ROUND_ROBIN:
        name = cluster_pb2.Cluster.LbPolicy.Name(msg.lb_policy)
        raise sub(loc, "lb_policy").expected("ROUND_ROBIN (plait's balancer)", name)
    eds = msg.eds_cluster_config
    eloc = sub(loc, "eds_cluster_config")
    only(eds, ("eds_config", "service_name"), eloc)
    if not is_ads(eds.eds_config):
        raise sub(eloc, "eds_config").error("expected endpoints over the ADS stream")
    only(eds.eds_config, ("ads", "resource_api_version"), sub(eloc, "eds_config"))
    facts = facts_of(msg, loc)
    h2, idle = _http_options(msg, loc)
    protocol = _protocol(facts, h2, loc)
    standard: dict[str, float | None] = {}
    if msg.HasField("connect_timeout"):
        standard["connect"] = seconds(msg.connect_timeout)
    if protocol.is_http:
        standard["idle"] = Timeouts().idle if idle is None else idle
    max_idle = fact(facts, "maxIdlePerEndpoint", int, 1024, loc)
    if max_idle < 0:
        raise sub(loc, "metadata.plait.maxIdlePerEndpoint").expected("a count", max_idle)
    policy = None
    if "policy" in facts:
        policy = policy_from_facts(facts["policy"], sub(loc, "metadata.plait.policy"))
    want = circuit_breakers(policy)
    got = msg.circuit_breakers if msg.HasField("circuit_breakers") else None
    if got != want:
        why = "the policy's circuitBreaker limits" if policy else "no BackendTrafficPolicy"
        raise sub(loc, "circuit_breakers").error(
            f"does not match metadata.plait.policy ({why}): plait's limits travel in the "
            "policy and are mirrored here"
        )
    return ClusterHead(
        name=str(msg.name),
        eds_name=str(eds.service_name or msg.name),
        protocol=protocol,
        timeouts=timeouts(standard, facts, loc),
        max_idle_per_endpoint=max_idle,
        policy=policy,
    )


def _http_options(msg: Message, loc: Loc) -> tuple[bool | None, float | None]:
    """(HTTP/2?, idle timeout) from the upstream ``HttpProtocolOptions``; ``None`` if absent."""
    options = msg.typed_extension_protocol_options
    if not options:
        return None, None
    for key in options:
        if key != HTTP_PROTOCOL_OPTIONS:
            raise sub(loc, f"typed_extension_protocol_options[{key!r}]").error("not supported")
    oloc = sub(loc, f"typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS!r}]")
    opts = unpack(options[HTTP_PROTOCOL_OPTIONS], upstream_http.HttpProtocolOptions, oloc)
    only(opts, ("explicit_http_config", "common_http_protocol_options"), oloc)
    common = opts.common_http_protocol_options
    only(common, ("idle_timeout",), sub(oloc, "common_http_protocol_options"))
    idle = seconds(common.idle_timeout) if common.HasField("idle_timeout") else None
    if not opts.HasField("explicit_http_config"):
        return None, idle
    explicit = opts.explicit_http_config
    kind = explicit.WhichOneof("protocol_config")
    if kind not in ("http_protocol_options", "http2_protocol_options"):
        raise sub(oloc, "explicit_http_config").expected("HTTP/1.1 or HTTP/2", kind)
    only(getattr(explicit, kind), (), sub(oloc, f"explicit_http_config.{kind}"))
    return kind == "http2_protocol_options", idle


def _protocol(facts: dict[str, Any], h2: bool | None, loc: Loc) -> Protocol:
    default = "http2" if h2 else "http"
    value = fact(facts, "protocol", str, default, loc)
    try:
        protocol = Protocol(value)
    except ValueError:
        raise sub(loc, "metadata.plait.protocol").expected(
            "http, http2, grpc or tcp", value
        ) from None
    fits = h2 is None if protocol is Protocol.TCP else h2 in (None, protocol.upstream_h2)
    if not fits:
        raise sub(loc, "typed_extension_protocol_options").error(
            f"the upstream HTTP options do not fit protocol {value!r}"
        )
    return protocol


def decode_endpoints(cla: Message) -> tuple[Endpoint, ...]:
    """The endpoints plait may send to. Raises ``ConfigError`` naming the assignment."""
    loc = at(f"ClusterLoadAssignment {cla.cluster_name}")
    only(cla, ("cluster_name", "endpoints"), loc)
    if len(cla.endpoints) > 1:
        raise sub(loc, "endpoints").expected("at most one locality", len(cla.endpoints))
    out: list[Endpoint] = []
    for locality in cla.endpoints:
        lloc = sub(loc, "endpoints[0]")
        only(locality, ("lb_endpoints", "load_balancing_weight", "locality"), lloc)
        for i, lb in enumerate(locality.lb_endpoints):
            ep = _endpoint(lb, sub(lloc, f"lb_endpoints[{i}]"))
            if ep is not None:
                out.append(ep)
    return tuple(out)


def _endpoint(lb: Message, loc: Loc) -> Endpoint | None:
    only(lb, ("endpoint", "health_status", "load_balancing_weight", "metadata"), loc)
    if lb.health_status not in _SERVES:
        return None
    only(lb.endpoint, ("address",), sub(loc, "endpoint"))
    only(lb.endpoint.address, ("socket_address",), sub(loc, "endpoint.address"))
    address, port = ip_address(lb.endpoint.address.socket_address, sub(loc, "endpoint.address"))
    weight = lb.load_balancing_weight.value if lb.HasField("load_balancing_weight") else 1
    if weight < 1:
        raise sub(loc, "load_balancing_weight").expected("a weight of at least 1", weight)
    facts = facts_of(lb, loc)
    labels = fact(facts, "labels", dict, {}, loc)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise sub(loc, "metadata.plait.labels").expected("string labels", labels)
    identity = fact(facts, "identity", str, "", loc) or None
    if identity is not None:
        try:
            identity = str(SpiffeId.parse(identity))
        except InvalidSpiffeId as exc:
            raise sub(loc, "metadata.plait.identity").error(
                f"expected a SPIFFE ID: {exc}"
            ) from None
    mtls = fact(facts, "mtls", bool, False, loc)
    return Endpoint(
        address=address, port=port, weight=weight, labels=labels, identity=identity, mtls=mtls
    )
