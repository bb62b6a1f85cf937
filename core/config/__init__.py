"""Config: the frozen model, and static YAML loading into it.

``load_config(paths, filter_types, sidecar=...)`` reads Kubernetes-style YAML
(``Service``, ``HTTPRoute``, ``Filter``, ``Sidecar``; docs/config-reference.md)
and returns a validated :class:`MeshConfig`; ``dump_config`` renders one for
the admin ``/config_dump``.
"""

from ._dump import dump_config
from ._load import (
    KINDS,
    ParsedDocument,
    load_config,
    load_documents,
    parse_stored,
    parse_text,
    resources_of,
)
from ._model import (
    AdminConfig,
    Cluster,
    Direction,
    Endpoint,
    FilterEntry,
    HeaderMatch,
    ListenerConfig,
    ListenerTLS,
    MatchType,
    MeshConfig,
    MtlsMode,
    PathMatch,
    Protocol,
    RouteMatch,
    RouteRule,
    RouteTable,
    Timeouts,
    TracingConfig,
    WeightedBackend,
)
from ._resource_set import Resources
from ._translate import WEIGHTED_SPLIT, split_entry, translate
from ._workload import WorkloadPort, WorkloadRes

__all__ = [
    "KINDS",
    "WEIGHTED_SPLIT",
    "AdminConfig",
    "Cluster",
    "Direction",
    "Endpoint",
    "FilterEntry",
    "HeaderMatch",
    "ListenerConfig",
    "ListenerTLS",
    "MatchType",
    "MeshConfig",
    "MtlsMode",
    "ParsedDocument",
    "PathMatch",
    "Protocol",
    "Resources",
    "RouteMatch",
    "RouteRule",
    "RouteTable",
    "Timeouts",
    "TracingConfig",
    "WeightedBackend",
    "WorkloadPort",
    "WorkloadRes",
    "dump_config",
    "load_config",
    "load_documents",
    "parse_stored",
    "parse_text",
    "resources_of",
    "split_entry",
    "translate",
]
