"""The validated, frozen config model that the runtime snapshot is built from.

The loader (``_load.py``) turns YAML resources (Service, HTTPRoute, Sidecar,
Filter, Workload, BackendTrafficPolicy) into one :class:`MeshConfig`. Everything here is
immutable: a reload builds a new ``MeshConfig`` and the runtime swaps it in
atomically; in-flight streams keep the one they started with.

Names: a cluster is named ``"<service>.<namespace>:<port>"``; inbound clusters
(the local app behind an ingress listener) ``"inbound|<port>"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from plait.sdk import FailStrategy, FilterSpec

if TYPE_CHECKING:
    from ._policy import TrafficPolicy
    from ._retry import RetryPolicy

__all__ = [
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
    "PathMatch",
    "Protocol",
    "RouteMatch",
    "RouteRule",
    "RouteTable",
    "Timeouts",
    "TracingConfig",
    "WeightedBackend",
]


class Protocol(Enum):
    HTTP = "http"  # HTTP/1.1 to the upstream (downstream may be HTTP/1.1 or h2c)
    HTTP2 = "http2"  # HTTP/2 (h2c) to the upstream
    GRPC = "grpc"  # HTTP/2 to the upstream, gRPC semantics (trailers, grpc-status)
    TCP = "tcp"  # opaque byte relay

    @property
    def is_http(self) -> bool:
        return self is not Protocol.TCP

    @property
    def upstream_h2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)


class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MtlsMode(Enum):
    """Peer authentication of an inbound listener (Istio's ``PeerAuthentication`` modes)."""

    STRICT = "STRICT"  # mTLS only; plaintext is refused
    PERMISSIVE = "PERMISSIVE"  # mTLS and plaintext on the same port (the first bytes decide)
    DISABLE = "DISABLE"  # plaintext only


class MatchType(Enum):
    EXACT = "Exact"
    PREFIX = "PathPrefix"
    REGEX = "RegularExpression"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds; ``None`` disables. Defaults follow Envoy/Istio where they have one."""

    request: float | None = None
    """Whole request, all attempts (HTTPRoute ``timeouts.request``); off by default like Istio."""
    backend_request: float | None = None
    """One upstream attempt (HTTPRoute ``timeouts.backendRequest``)."""
    connect: float = 10.0
    """Upstream TCP connect (Istio ``connectTimeout`` default 10 s)."""
    idle: float = 3600.0
    """Downstream and upstream connection idle (Envoy 1 h)."""
    request_headers: float = 10.0
    """A request head must be complete this long after its first byte, else 408."""
    drain: float = 5.0
    """Grace period for in-flight requests on SIGTERM."""
    stream_idle: float | None = None
    """Upstream clusters: the longest wait for the next piece of a response body
    (``BackendTrafficPolicy`` ``timeouts.streamIdle``); past it the stream is reset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    address: str
    port: int
    weight: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    identity: str | None = None
    """The SPIFFE ID the endpoint's certificate must carry (a Workload's
    ``spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>``); ``None`` for static
    Service endpoints, which have no mesh identity."""
    mtls: bool = False
    """The endpoint accepts mesh mTLS (its Workload says ``tlsMode: mutual``): auto mTLS
    originates TLS to it when the sidecar has an identity (``core/upstream/_tls.py``)."""

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    name: str
    protocol: Protocol
    endpoints: tuple[Endpoint, ...]
    timeouts: Timeouts = Timeouts()
    max_idle_per_endpoint: int = 1024
    """Idle keep-alive connections kept per endpoint (the idle timeout closes them). Below
    the usual concurrency it makes connections churn: 64 measured 6% of CPU in connects
    at 100 concurrent HTTP/2 streams proxied to HTTP/1.1."""
    policy: TrafficPolicy | None = None
    """The ``BackendTrafficPolicy`` targeting this cluster's Service (``_policy.py``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterEntry:
    """One filter in a chain: registry type, its parsed (frozen) config, and how it fails."""

    name: str
    """Instance name for logs and metrics (the Filter resource name, or the type)."""
    spec: FilterSpec[Any]
    config: Any
    """Whatever ``spec.parse_config`` returned (``None`` for config-less filters)."""
    fail_strategy: FailStrategy = FailStrategy.FAIL_CLOSED
    type: str = ""
    """The registry type as written (what xDS carries; the receiver looks it up again)."""
    raw_config: Any = None
    """The config as written, JSON-compatible (what xDS carries; re-parsed by the receiver)."""
    known: bool = True
    """False when the translator ran with ``unknown_filters=True`` (the control plane) and
    no registry entry exists here: the entry only carries ``type`` and ``raw_config``."""
    version: str = ""
    """The version specifier its package must satisfy (``""``: any); what xDS carries."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMatch:
    type: MatchType
    value: str
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMatch:
    name: str
    """Lower-case header name."""
    type: MatchType
    value: str
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    """All present conditions must hold (Gateway API: AND within a match)."""

    path: PathMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    method: str | None = None
    query_params: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedBackend:
    cluster: str
    weight: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """A rule matches if any of its matches does (OR across matches)."""

    name: str
    matches: tuple[RouteMatch, ...]
    backends: tuple[WeightedBackend, ...]
    filters: tuple[FilterEntry, ...] = ()
    """Rule filters; the translator appends the weighted-split filter for ``backends``."""
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy | None = None
    """The rule's ``retry`` (the translator adds the resilience layers for it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTable:
    """The rules of every HTTPRoute attached to one Service, in Gateway API precedence order."""

    service: str
    rules: tuple[RouteRule, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerTLS:
    """TLS termination on a listener (server certificate; ALPN offers h2 and http/1.1)."""

    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    name: str
    direction: Direction
    bind: str
    port: int
    protocol: Protocol
    route_table: str
    """Key into ``MeshConfig.routes``: the target service port (``"<svc>.<ns>:<port>"``),
    or ``inbound|<port>``; empty for ``tcp`` listeners, which have no routes."""
    filters: tuple[FilterEntry, ...] = ()
    timeouts: Timeouts = Timeouts()
    tcp_cluster: str | None = None
    """For ``protocol: tcp`` listeners: the cluster bytes are relayed to."""
    tls: ListenerTLS | None = None
    mtls: MtlsMode | None = None
    """Inbound peer authentication; ``None``: no PeerAuthentication applies, so PERMISSIVE
    while the sidecar has an identity and plaintext while it has none."""
    request_metrics: bool = True
    """Whether this listener's requests count in the request metrics (a ``Telemetry``'s
    ``metrics`` overrides turn them off per direction)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    bind: str = "127.0.0.1"
    port: int = 15000


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingConfig:
    """Distributed tracing of one sidecar (``Sidecar.spec.tracing``; ``tracing.py``)."""

    endpoint: str
    """The OTLP collector: ``http://HOST:4318`` for OTLP/HTTP (spans go to
    ``ENDPOINT/v1/traces``), ``http://HOST:4317`` for gRPC (``https``: over TLS)."""
    protocol: str = "http/protobuf"
    """``http/protobuf`` or ``grpc`` (OpenTelemetry's ``OTEL_EXPORTER_OTLP_PROTOCOL`` names)."""
    sampling: float = 1.0
    """Percent of the requests without a caller's decision that are sampled (Istio's
    ``tracing.sampling``: 0-100, default 1)."""
    service: str = "plait"
    """``service.name`` of the spans: the Sidecar's ``NAME.NAMESPACE``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    version: str
    """A content hash of the sources, shown in /config_dump and the access log."""
    listeners: tuple[ListenerConfig, ...]
    clusters: Mapping[str, Cluster]
    routes: Mapping[str, RouteTable]
    admin: AdminConfig = AdminConfig()
    sources: tuple[str, ...] = ()
    max_request_headers_kb: int = 60
    """Envoy's default (60 KiB); past it the request is answered 431."""
    access_log: str | None = None
    """Where one JSON line per request goes (a file path or ``/dev/stdout``); off by default."""
    access_log_sampling: float = 100.0
    """Percent of the successful requests logged; a request that failed (status 0 or
    >= 400, or a failure reason) is always logged."""
    tracing: TracingConfig | None = None
    """Spans over OTLP; off by default."""
