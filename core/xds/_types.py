"""xDS v3 type URLs shared by the control plane's ADS server and the sidecar's ADS client.

The type URL names a resource type on the wire (``DiscoveryRequest.type_url``) and in the
``google.protobuf.Any`` that carries each resource. :data:`ORDER` is the push order Envoy
recommends for ADS so that a client never sees a reference before its target exists
(make-before-break, see "Eventual consistency considerations" in Envoy's xDS protocol doc):
clusters, then their endpoints, then listeners, then the route configurations they name.
"""

from __future__ import annotations

from typing import Final

_PREFIX: Final = "type.googleapis.com/"

LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"

ORDER: Final = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
"""Push order over ADS: CDS → EDS → LDS → RDS."""

WILDCARD_TYPES: Final = frozenset({LISTENER, CLUSTER})
"""Types for which an empty ``resource_names`` on the first request means "everything" (the
legacy wildcard of the xDS protocol); for the others the client always names what it wants."""

__all__ = ["CLUSTER", "ENDPOINT", "LISTENER", "ORDER", "ROUTE", "WILDCARD_TYPES", "short_name"]


def short_name(type_url: str) -> str:
    """The message name of a type URL (``Listener``, ``ClusterLoadAssignment``...)."""
    return type_url.rsplit(".", 1)[-1]
