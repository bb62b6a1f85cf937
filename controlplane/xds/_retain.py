"""Make-before-break per stream: clusters stay served while a route the client may run names them.

Theory of operation. A change that renames a cluster (a Service port changed, a route moved to
another Service and the old one deleted) reaches the client as several responses: CDS and EDS
first (``ORDER``), then the listeners and route configurations. Had the CDS response simply
left the old cluster out, a client would drop it ("does not exist") while the route it still
runs sends calls there, and those calls fail until the new route arrives and is applied.

So each stream keeps a :class:`Retention`:

* for every response of a route-carrying type (LDS, RDS) it records the clusters that the
  client's whole set of that type names after applying it (``route.cluster``,
  ``weighted_clusters``, ``TcpProxy.cluster``, an inline ``route_config``), by nonce;
* an ACK of a nonce (also one that is no longer the latest) means the client runs that
  response, so the records before it are dropped; a NACK drops nothing (the client keeps what
  it ran before, still recorded);
* the clusters named by what remains (the ACKed response and every one sent after it) are
  *referenced*. A referenced cluster, and its endpoints, that the client subscribes to through
  the wildcard (a plait sidecar, an Envoy) but that left the source is still sent, as it was
  last sent on this stream; after an ACK of a route type the stream recomputes CDS and EDS,
  which then drop what no route references any more (the stream does that, ``_stream.py``);
* a client that subscribes by name (gRPC) says itself what it still uses: it names a cluster
  until neither its running config nor a call in flight needs it, which lasts past its ACK of
  the new route (it switches only once the new route's clusters and endpoints arrived). A
  cluster that left the source is sent, as last sent, while the client names it, if a route
  sent on this stream ever named it (a name no route of ours gave it gets the usual "does
  not exist").

EDS ``ClusterLoadAssignment`` names are the clusters' names (``eds_cluster_config.service_name``
is the cluster's name, ``_encode_cluster``), so the same referenced names keep both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import (  # type: ignore[import-untyped]
    tcp_proxy_pb2,
)

from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ROUTE

from ._source import Message

__all__ = ["ROUTE_TYPES", "Retention", "clusters_named"]

ROUTE_TYPES = frozenset({LISTENER, ROUTE})
"""Types whose resources name clusters."""
_MAX_PENDING = 16
"""UnACKed route responses recorded one by one, per type."""


def clusters_named(type_url: str, resources: Iterable[Message]) -> frozenset[str]:
    """The clusters that Listeners or RouteConfigurations send traffic to."""
    names: set[str] = set()
    for resource in resources:
        if type_url == ROUTE:
            _route_clusters(resource, names)
        elif type_url == LISTENER:
            _listener_clusters(resource, names)
    return frozenset(names)


def _route_clusters(config: Message, names: set[str]) -> None:
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            names.update(w.name for w in action.weighted_clusters.clusters)


def _listener_clusters(listener: Message, names: set[str]) -> None:
    configs = [f.typed_config for chain in listener.filter_chains for f in chain.filters]
    if listener.HasField("default_filter_chain"):
        configs += [f.typed_config for f in listener.default_filter_chain.filters]
    if listener.api_listener.HasField("api_listener"):
        configs.append(listener.api_listener.api_listener)
    for any_config in configs:
        if any_config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
            proxy = tcp_proxy_pb2.TcpProxy()
            any_config.Unpack(proxy)
            if proxy.cluster:
                names.add(proxy.cluster)
            names.update(w.name for w in proxy.weighted_clusters.clusters)
        elif any_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
            hcm = hcm_pb2.HttpConnectionManager()
            any_config.Unpack(hcm)
            if hcm.HasField("route_config"):
                _route_clusters(hcm.route_config, names)


class Retention:
    """One stream's record of the routes its client may run, and of the clusters and
    endpoints last sent to it; see the module docstring."""

    def __init__(self) -> None:
        # route type → [(nonce, clusters its set names)], oldest first; the first entry is
        # the response the client last ACKed (or the first one sent)
        self._routes: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self._sent: dict[str, dict[str, Message]] = {CLUSTER: {}, ENDPOINT: {}}
        self._ever: set[str] = set()  # every cluster a route sent on this stream named

    def sent(self, type_url: str, nonce: str, resources: Mapping[str, Message]) -> None:
        """A response went out; ``resources`` is the client's whole set of the type after it."""
        if type_url in ROUTE_TYPES:
            entry = (nonce, clusters_named(type_url, resources.values()))
            entries = self._routes.setdefault(type_url, [])
            entries.append(entry)
            self._ever |= entry[1]
            if len(entries) > _MAX_PENDING:
                # A client that never ACKs must not grow this without bound: fold the
                # unACKed responses into the latest (only its ACK lets their clusters go).
                entries[1:] = [(nonce, frozenset().union(*(c for _, c in entries[1:])))]
        elif type_url in self._sent:
            self._sent[type_url] = dict(resources)

    def acked(self, type_url: str, nonce: str) -> bool:
        """The client applied the response with ``nonce``; True if that may let a cluster go."""
        entries = self._routes.get(type_url)
        if not entries:
            return False
        for i, (sent_nonce, _) in enumerate(entries):
            if sent_nonce == nonce:
                if i == 0:
                    return False
                before = self.referenced()
                del entries[:i]
                return self.referenced() != before
        return False

    def referenced(self) -> frozenset[str]:
        """Clusters some route the client may still run names."""
        return frozenset().union(*(c for es in self._routes.values() for _, c in es))

    def fill(
        self,
        type_url: str,
        resources: dict[str, Message],
        wildcard: bool,
        names: frozenset[str] | set[str],
    ) -> dict[str, Message]:
        """``resources`` plus, as last sent on this stream, the clusters (or their endpoints)
        that left the source but that the client still needs: through the wildcard, those a
        route it may run names; by name, those it still names that a route sent on this
        stream named."""
        last = self._sent.get(type_url)
        if not last:
            return resources
        gone = last.keys() - resources.keys()
        if not gone:
            return resources
        keep = (gone & names & self._ever) | (gone & self.referenced() if wildcard else set())
        return {**resources, **{name: last[name] for name in keep}} if keep else resources
