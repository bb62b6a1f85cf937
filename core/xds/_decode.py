"""xDS v3 resources → :class:`MeshConfig` (the sidecar's side of the wire).

Theory of operation: the control plane runs the same translator as static mode and encodes
its ``MeshConfig`` into standard xDS resources (``plait.controlplane.xds._encode``); the
sidecar's ADS client hands what it received to :func:`decode_mesh`, which builds the
``MeshConfig`` again with the sidecar's *own* filter registry, so the result is exactly what
static mode would have built from the same YAML (the round-trip tests pin that), and the
sidecar's snapshot code does not care where its config came from.

Outcomes, and what the client does with each:

* a ``MeshConfig``: complete and valid; build the snapshot, swap it in, ACK.
* :class:`~plait.sdk.ConfigError`: something plait cannot honour (an unknown filter type, a
  config its filter rejects, a field plait does not implement, an address that is not an IP).
  Its text names the resource and field and is the NACK's ``error_detail``; the last good
  snapshot stays.
* :class:`Incomplete`: a reference to a resource not received yet (a Listener's
  RouteConfiguration, a Route's or TcpProxy's Cluster, a Cluster's ClusterLoadAssignment).
  Not an error: xDS is eventually consistent; wait for more (:func:`referenced_names` says
  what to subscribe to). Config errors are reported before incompleteness, since more
  resources cannot fix a bad one.

Decoded as given: every Listener, RouteConfiguration and Cluster in ``resources`` (a table
no listener uses is kept, as the translator keeps it); a ClusterLoadAssignment no Cluster
names is ignored (it outlives its Cluster for a moment on a removal). Listeners are ordered
by ``metadata.plait.order``, then name. ``version`` is the caller's (e.g. the ADS
``version_info``s), ``sources`` is ``("xds",)`` and ``admin`` the sidecar's own. The
sidecar-wide ``max_request_headers_kb``, ``access_log`` and ``tracing`` must be the same on
every listener (``tracing`` on every HTTP listener).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.endpoint.v3 import endpoint_pb2  # type: ignore[import-untyped]
from envoy.config.listener.v3 import listener_pb2  # type: ignore[import-untyped]
from envoy.config.route.v3 import route_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from plait.core.config import AdminConfig, Cluster, MeshConfig, RouteTable, TracingConfig
from plait.sdk import ConfigError, FilterSpec

from ._decode_base import Incomplete, Message, at, unpack
from ._decode_cluster import decode_cluster, decode_endpoints
from ._decode_listener import Decoded, decode_listener
from ._decode_route import decode_route_config
from ._decode_telemetry import AccessLogSetting
from .wire import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = ["MESSAGES", "Incomplete", "decode_mesh", "referenced_names", "resource_name"]

MESSAGES: dict[str, Any] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}


def resource_name(type_url: str, msg: Message) -> str:
    """A resource's name: a ClusterLoadAssignment's is its ``cluster_name``."""
    return str(msg.cluster_name if type_url == ENDPOINT else msg.name)


def decode_mesh(
    resources: Mapping[str, Mapping[str, Message]],
    filter_types: Mapping[str, FilterSpec[Any]],
    *,
    version: str,
    admin: AdminConfig,
) -> MeshConfig:
    """The ``MeshConfig`` the resources describe (``type_url → name → message``).

    Messages may be given as the resource types or packed in ``google.protobuf.Any``.

    Raises:
        ConfigError: a resource plait cannot honour; the text names it (a NACK reason).
        Incomplete: everything valid, but referenced resources are missing.
    """
    lis_msgs = _messages(resources, LISTENER)
    route_msgs = _messages(resources, ROUTE)
    cluster_msgs = _messages(resources, CLUSTER)
    cla_msgs = _messages(resources, ENDPOINT)
    decoded = sorted(
        (decode_listener(m, filter_types) for m in lis_msgs.values()),
        key=lambda d: (d.order, d.listener.name),
    )
    routes: dict[str, RouteTable] = {}
    wanted_clusters: set[str] = set()
    for name, msg in route_msgs.items():
        routes[name], names = decode_route_config(msg, filter_types)
        wanted_clusters |= names
    heads = [decode_cluster(m) for m in cluster_msgs.values()]
    endpoints = {name: decode_endpoints(m) for name, m in cla_msgs.items()}
    clusters: dict[str, Cluster] = {
        h.name: h.with_endpoints(endpoints[h.eds_name]) for h in heads if h.eds_name in endpoints
    }
    wanted_clusters |= {d.listener.tcp_cluster for d in decoded if d.listener.tcp_cluster}
    missing = {
        ROUTE: {d.listener.route_table for d in decoded if d.listener.route_table} - set(routes),
        CLUSTER: wanted_clusters - {h.name for h in heads},
        ENDPOINT: {h.eds_name for h in heads} - set(endpoints),
    }
    kb, access_log, tracing = _mesh_wide(decoded)
    if any(missing.values()):
        raise Incomplete(missing)
    return MeshConfig(
        version=version,
        listeners=tuple(d.listener for d in decoded),
        clusters=clusters,
        routes=routes,
        admin=admin,
        sources=("xds",),
        max_request_headers_kb=kb,
        access_log=access_log[0] if access_log is not None else None,
        access_log_sampling=access_log[1] if access_log is not None else 100.0,
        tracing=tracing,
    )


def referenced_names(resources: Mapping[str, Mapping[str, Message]]) -> dict[str, set[str]]:
    """What the sidecar must subscribe to besides the wildcard Listeners and Clusters.

    ``ROUTE``: the RouteConfigurations the Listeners' HTTP connection managers name;
    ``ENDPOINT``: the ClusterLoadAssignments the Clusters name. Malformed resources are
    skipped here (:func:`decode_mesh` reports them).
    """
    routes: set[str] = set()
    for msg in resources.get(LISTENER, {}).values():
        lis = _as(msg, listener_pb2.Listener)
        for chain in lis.filter_chains if lis is not None else ():
            for f in chain.filters:
                hcm = _as(f.typed_config, hcm_pb2.HttpConnectionManager)
                if hcm is not None and hcm.HasField("rds"):
                    routes.add(str(hcm.rds.route_config_name))
    eds: set[str] = set()
    for msg in resources.get(CLUSTER, {}).values():
        cluster = _as(msg, cluster_pb2.Cluster)
        if cluster is not None and cluster.type == cluster_pb2.Cluster.EDS:
            eds.add(str(cluster.eds_cluster_config.service_name or cluster.name))
    return {ROUTE: routes, ENDPOINT: eds}


def _messages(resources: Mapping[str, Mapping[str, Message]], type_url: str) -> dict[str, Any]:
    cls = MESSAGES[type_url]
    kind = cls.DESCRIPTOR.name
    out: dict[str, Any] = {}
    for name, given in resources.get(type_url, {}).items():
        loc = at(f"{kind} {name}")
        msg = unpack(given, cls, loc) if isinstance(given, any_pb2.Any) else given
        if not isinstance(msg, cls):
            raise loc.expected(f"a {cls.DESCRIPTOR.full_name}", type(msg).__name__)
        own = resource_name(type_url, msg)
        if own != name:
            raise loc.error(f"the resource is named {own!r}")
        out[name] = msg
    return out


def _as(msg: Message, cls: Any) -> Any:
    if isinstance(msg, cls):
        return msg
    if isinstance(msg, any_pb2.Any) and msg.TypeName() == cls.DESCRIPTOR.full_name:
        out = cls()
        msg.Unpack(out)
        return out
    return None


def _mesh_wide(
    decoded: list[Decoded],
) -> tuple[int, AccessLogSetting | None, TracingConfig | None]:
    """``max_request_headers_kb``, ``access_log`` and ``tracing``, the same on every listener."""
    kbs = {d.max_request_headers_kb for d in decoded if d.max_request_headers_kb is not None}
    logs = {d.access_log for d in decoded}
    traces = {d.tracing for d in decoded if d.http}
    checks = (("max_request_headers_kb", kbs), ("access_log", logs), ("tracing", traces))
    for what, values in checks:
        if len(values) > 1:
            shown = ", ".join(sorted(map(str, values)))
            raise ConfigError(f"Listeners: {what} differs between listeners ({shown}); "
                              "plait has one setting for the sidecar")  # fmt: skip
    return (
        (kbs.pop() if kbs else 60),
        (logs.pop() if logs else None),
        (traces.pop() if traces else None),
    )
