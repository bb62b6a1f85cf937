"""A sidecar's :class:`MeshConfig` → Envoy xDS v3 resources (the control plane's side).

Theory of operation: the control plane runs the same translator as static mode
(``translate(..., unknown_filters=True)``) once per sidecar and hands the result to
:func:`encode_mesh`, which maps it onto standard xDS resources: LDS from
``cfg.listeners`` (``_encode_listener``), RDS from ``cfg.routes`` (``_encode_route``), CDS and
EDS from ``cfg.clusters`` (``_encode_cluster``). The sidecar's
:func:`plait.core.xds._decode.decode_mesh` is the inverse: decoding what this module
produces gives back the same listeners, routes and clusters (the round-trip tests pin that).
Envoy and gRPC's proxyless clients read the standard fields; what only plait has travels in
``metadata["plait"]`` and in ``TypedStruct`` filter configs (``plait.core.xds.wire``).

Not encoded: ``MeshConfig.version`` (the ADS server versions content by hash), ``sources``,
``admin`` (the sidecar's own), and a route rule without matches (it can never be selected).
The mesh-wide ``max_request_headers_kb`` and ``access_log`` ride on every listener.

Every call builds fresh messages, never mutated afterwards (the ``XdsSource`` contract).
"""

from __future__ import annotations

from plait.core.config import MeshConfig
from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ROUTE

from ._encode_base import Message
from ._encode_cluster import encode_cluster, encode_endpoints
from ._encode_listener import encode_api_listener, encode_listener
from ._encode_route import encode_route_table

__all__ = ["encode_api_listener", "encode_mesh"]


def encode_mesh(cfg: MeshConfig) -> dict[str, dict[str, Message]]:
    """The xDS resources of ``cfg``: ``type_url → resource name → message``.

    Every type URL of :data:`~plait.core.xds.wire.ORDER` is present (possibly empty), so a
    caller can serve "no listeners" as readily as some.

    Raises:
        ConfigError: something plait's xDS form cannot carry, named by resource: a filter
            config that is not JSON, an endpoint that is not an IP address, a rule whose
            filters were not built by the translator.
    """
    return {
        CLUSTER: {name: encode_cluster(c) for name, c in cfg.clusters.items()},
        ENDPOINT: {name: encode_endpoints(c) for name, c in cfg.clusters.items()},
        LISTENER: {lis.name: encode_listener(lis, cfg, i) for i, lis in enumerate(cfg.listeners)},
        ROUTE: {key: encode_route_table(key, table) for key, table in cfg.routes.items()},
    }
