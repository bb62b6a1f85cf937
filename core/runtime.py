"""The sidecar's live state: the current immutable snapshot and its swap.

Theory of operation: a :class:`Snapshot` is compiled from a validated
:class:`MeshConfig` (routers, one chain per listener x route rule, cluster
pickers) and never changes afterwards. :meth:`Runtime.apply` compiles a new
one completely, then replaces ``Runtime.snapshot`` with a single assignment, so
a stream that has pinned the old snapshot (:meth:`plait.core.exchange.machine.Exchange.begin`
reads it once, at the start) finishes on it, and every new stream sees the new
one. A config that fails to compile is rejected whole; the previous snapshot
stays and the error is kept for ``/config_dump`` and the logs.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from plait.sdk import ConfigError, ConnectionFilter, StreamContext

from .access_log import AccessLog
from .config._model import (
    Direction,
    ListenerConfig,
    MeshConfig,
    RouteRule,
    Timeouts,
    TracingConfig,
)
from .exchange import Chain
from .identity import CertStore, Leaf
from .mesh_labels import UNKNOWN, LocalWorkload, series_values
from .metrics import Stats
from .router import Router
from .tap import Tap, publish
from .tracer import Tracer
from .upstream._manager import ClusterRuntime, Upstreams

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .exchange.machine import Exchange

__all__ = ["ListenerRuntime", "Runtime", "Snapshot"]

log = logging.getLogger(__name__)


_NONE = "\0(no request yet)"
"""What no request's cluster is (compared by identity)."""
_GRPC_CODES = frozenset(str(code) for code in range(17))
"""gRPC's status codes: the ``grpc_response_status`` label values a response may give."""


class _NoRoutes:
    """The router of a listener without a route table (TCP): nothing matches."""

    @staticmethod
    def match(head: object) -> None:
        return None


class ListenerRuntime:
    """One listener's compiled view of one snapshot."""

    def __init__(self, runtime: Runtime, snapshot: Snapshot, config: ListenerConfig) -> None:
        self.runtime = runtime
        self.snapshot = snapshot
        self.config = config
        self.name = config.name
        self.timeouts = config.timeouts
        table = snapshot.config.routes.get(config.route_table)
        self.router: Router | _NoRoutes = Router(table) if table is not None else _NoRoutes()
        self._routes: dict[int, tuple[Chain, str, Timeouts, float | None]] = {}
        """A rule (by identity) → its chain, name, timeouts and whole-request timeout
        (the rule's, else the listener's): what the exchange reads of the rule it matched,
        read here once (the config's classes are interpreted: an attribute is a lookup)."""
        if table is not None:
            for rule in table.rules:
                chain = Chain(config.filters + rule.filters, on_failure=runtime.stats.filter_failed)
                timeout = rule.timeouts.request or self.timeouts.request
                self._routes[id(rule)] = (chain, rule.name, rule.timeouts, timeout)
        self._stats = runtime.stats
        self._access = runtime.access_log
        self._metrics = config.request_metrics
        self._taps = runtime.taps
        self.tracing = runtime.tracing
        self.trace_ratio = self.tracing.ratio if self.tracing is not None else 0.0
        """The sidecar's tracer when its config has ``tracing``: the exchange asks it for
        a span (or only a propagated context) at the start and ends the span at the end."""
        self.inbound = config.direction is Direction.INBOUND
        self.connection_filters: tuple[tuple[str, ConnectionFilter], ...] = ()
        """What decides each connection of a ``tcp`` listener (its filters' connection
        filters, in order); HTTP listeners run their filters per request instead."""
        if table is None and config.filters:
            self.connection_filters = tuple(_connection_filters(config))
        self._identity = runtime.identity
        self._series: dict[tuple[str | None, str | None, str | None], int] = {}
        """``(cluster, endpoint, peer SPIFFE ID)`` → the stats' series of its mesh labels
        (``mesh_labels.py``); emptied when this sidecar's certificate changes."""
        self._series_leaf: Leaf | None = runtime.identity.leaf
        """The certificate ``_series`` was made with (its own identity is a label)."""
        self._last: tuple[str | None, str | None, str | None, int] = (_NONE, _NONE, _NONE, -1)
        """The latest request's ``(cluster, endpoint, peer, series)``: a request to the same
        peers (compared by identity: the strings come from config and the connection) skips
        the table."""
        self._last_upstream: tuple[str | None, str | None, Leaf | None, str | None] = (
            _NONE, _NONE, None, None
        )  # fmt: skip
        """The latest :meth:`upstream_identity`: cluster, endpoint and certificate (compared
        by identity), and what it found. A listener runtime has one snapshot, so an
        endpoint's expected identity stays; the store is this sidecar's, ready with a leaf."""

    def route_for(self, rule: RouteRule) -> tuple[Chain, str, Timeouts, float | None]:
        return self._routes[id(rule)]

    def record(self, ctx: StreamContext, seconds: float, ex: Exchange) -> None:
        """One finished request: its metrics when its listener records them (with the
        ``grpc-status`` of the response trailers the exchange kept, if any), its access-log
        line, its taps."""
        response = ctx.response
        status = response.status if response is not None else 0
        access = self._access
        # This sidecar's certificate (none: no mTLS to any upstream either), read once.
        leaf = self._identity.leaf if self._metrics or access is not None else None
        if self._metrics:
            self._observe(ctx, status, seconds, ex, leaf)
        if access is not None and access.wants(status, ctx.failure_reason):
            inbound = self.inbound
            access.entry(
                ctx, self.name, inbound, leaf,
                None if inbound or leaf is None else self.upstream_identity(ctx), seconds,
                ex.received(), ex.bytes_out, ex.attempts, ex.trace_id,
            )  # fmt: skip
        if self._taps:  # nobody taps: this empty-list check is the whole cost
            publish(self._taps, ctx, self.name, self.inbound, seconds)

    def _observe(
        self, ctx: StreamContext, status: int, seconds: float, ex: Exchange, leaf: Leaf | None
    ) -> None:
        """The request metrics of one finished request (``leaf``: this sidecar's certificate
        now)."""
        pid = ctx.connection.peer_identity
        peer = pid.spiffe_id if pid is not None else None
        cluster, upstream = ctx.cluster, ctx.upstream_address
        last = self._last
        if (
            cluster is last[0] and upstream is last[1] and peer is last[2]
            and leaf is self._series_leaf
        ):  # fmt: skip
            series = last[3]  # the same peers as the request before: no hashing
        else:
            series = self._series_for(cluster, upstream, peer, leaf)
        grpc = ex.grpc_status
        if grpc is None:
            grpc = ""
            response = ctx.response
            # gRPC's trailers-only form: the status in the head of a response without a body
            if response is not None and ex.bytes_out == 0 and ctx.request.http_version == "2":
                grpc = response.headers.get("grpc-status") or ""
        if grpc and grpc not in _GRPC_CODES:  # the upstream's text: bounded, never a label
            grpc = UNKNOWN
        self._stats.observe(series, status, grpc, ctx.failure_reason or "", seconds)

    def _series_for(
        self, cluster: str | None, upstream: str | None, peer: str | None, leaf: Leaf | None
    ) -> int:
        if leaf is not self._series_leaf:  # a new certificate: maybe a new own identity
            self._series.clear()
            self._series_leaf = leaf
        key = (cluster, upstream, peer)
        series = self._series.get(key)
        if series is None:
            own = str(leaf.spiffe_id) if leaf is not None else None
            values = series_values(
                self.config, self.snapshot.config, self.runtime.local, own, cluster, upstream, peer
            )
            series = self._series[key] = self._stats.series_of(values)
        self._last = (cluster, upstream, peer, series)
        return series

    def trace_end(self, span: object, ctx: StreamContext, attempts: int) -> None:
        """End the stream's span (a sampled stream's only): the runtime's side of ``finish``."""
        tracing = self.tracing
        if tracing is not None:
            leaf = self.runtime.identity.leaf
            identity = str(leaf.spiffe_id) if leaf is not None else None
            peer = None if self.inbound else self.upstream_identity(ctx)
            tracing.end(span, ctx, attempts, self.inbound, identity, peer)

    def upstream_identity(self, ctx: StreamContext) -> str | None:
        """The SPIFFE ID of the upstream server that answered ``ctx`` over mTLS, else ``None``.

        The pool's TLS gate (``upstream/_tls.py``) lets no connection through whose verified
        certificate lacks the endpoint's expected ID, and a pool that may use mTLS does so
        whenever this sidecar has an identity (plaintext connections are then stale)."""
        address = ctx.upstream_address
        if ctx.response is None or ctx.failure_reason is not None or address is None:
            return None
        cluster, leaf = ctx.cluster, self._identity.leaf
        last = self._last_upstream
        if cluster is last[0] and address is last[1] and leaf is last[2]:
            return last[3]  # the endpoint of the request before, under the same certificate
        crt = self.snapshot.clusters.get(cluster) if cluster is not None else None
        pool = crt.by_key.get(address) if crt is not None else None
        if pool is None:  # not made yet: nothing to keep
            return None
        origin, found = pool.origin, None
        if origin is not None and origin.store.ready:  # else plaintext to this endpoint
            found = origin.expected
        self._last_upstream = (cluster, address, leaf, found)
        return found


def _connection_filters(config: ListenerConfig) -> list[tuple[str, ConnectionFilter]]:
    out = []
    for entry in config.filters:
        make = entry.spec.connection
        if make is None:
            raise ConfigError(
                f"filter {entry.name!r} (type {entry.spec.name!r}) cannot run on a tcp "
                "listener: it decides requests, and a tcp listener relays bytes",
                field=f"listener {config.name}",
            )
        out.append((entry.name, make(entry.config)))
    return out


class Snapshot:
    """An immutable, compiled config."""

    def __init__(self, runtime: Runtime, config: MeshConfig) -> None:
        self.config = config
        self.version = config.version
        self.loaded_at = time.time()
        self.clusters: dict[str, ClusterRuntime] = {
            name: ClusterRuntime(c, runtime.upstreams) for name, c in config.clusters.items()
        }
        self.listeners: Mapping[str, ListenerRuntime] = {
            lc.name: ListenerRuntime(runtime, self, lc) for lc in config.listeners
        }


class Runtime:
    """Holds the current snapshot and counts live streams for draining."""

    def __init__(self, config: MeshConfig, stats: Stats | None = None) -> None:
        self.stats = stats or Stats()
        self.identity = CertStore()
        """This sidecar's mesh identity (certificate, key, trust bundle): empty until the
        identity agent or the ``--identity-*`` files fill it; listeners and pools read it."""
        self.local = LocalWorkload()
        """The workload this sidecar fronts (the mesh labels of its metrics); the sidecar
        sets it from its command line."""
        self.upstreams = Upstreams(self.identity)
        self.stats.upstream_source = self._upstream_counters
        self.stats.ejected_source = self._ejected
        self.active_streams = 0
        self.draining = False
        self._idle: anyio.Event | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.access_log: AccessLog | None = None
        self.tracing: Tracer | None = None
        self.taps: list[Tap] = []
        """Who is watching this sidecar's requests (``plait.core.tap``; admin ``GET /tap``)."""
        self.snapshot = self._swap(config)

    def _upstream_counters(self) -> dict[str, dict[str, int]]:
        return self.upstreams.counters()

    def _ejected(self) -> dict[str, int]:
        """Per cluster, the endpoints its outlier detection report shows not healthy."""
        out = {}
        for name, state in self.upstreams.states().items():
            report = state.reports.get("outlier")
            hosts = report() if report is not None else None
            if isinstance(hosts, dict):
                out[name] = sum(
                    1 for h in hosts.values() if isinstance(h, dict) and h.get("state") != "healthy"
                )
        return out

    def _swap(self, config: MeshConfig) -> Snapshot:
        self._open_access_log(config.access_log, config.access_log_sampling)
        self._open_tracing(config.tracing)
        snap = Snapshot(self, config)
        self.snapshot = snap
        self.upstreams.prune(k for c in snap.clusters.values() for k in c.keys)
        self.upstreams.prune_states(snap.clusters)
        self.stats.config_version = snap.version
        self.stats.config_timestamp = snap.loaded_at
        return snap

    def _open_access_log(self, path: str | None, sampling: float) -> None:
        current = self.access_log
        if current is not None and current.path == path:
            current.sampling = sampling  # the same file: only the sampling may change
            return
        if current is None and path is None:
            return
        self.access_log = AccessLog(path, sampling) if path else None  # OSError rejects it
        if current is not None:
            current.close()

    def _open_tracing(self, config: TracingConfig | None) -> None:
        current = self.tracing
        if (current.config if current is not None else None) == config:
            return
        if config is None:
            self.tracing = None
        else:
            from .tracing import Tracing  # OpenTelemetry only in a sidecar that traces

            self.tracing = Tracing(config)
        if current is not None:
            current.close_later()

    def close(self) -> None:
        """Flush and close what the runtime owns (access log, spans waiting for export,
        idle upstream connections)."""
        if self.access_log is not None:
            self.access_log.close()
        if self.tracing is not None:
            self.tracing.close()
        self.upstreams.close()

    def apply(self, config: MeshConfig) -> Snapshot:
        """Compile ``config`` and swap it in; raises (keeping the old one) if it fails.

        The sidecar then binds the config's listeners and reports the outcome:
        :meth:`activated`, or :meth:`reject` after swapping the previous config back.
        """
        return self._swap(config)

    def activated(self, what: str) -> None:
        """The swapped-in config serves (``what`` describes it for the log)."""
        self.stats.reloads["success"] = self.stats.reloads.get("success", 0) + 1
        self.last_error = None
        self.last_error_at = None
        log.info("config active: %s", what)

    def unchanged(self) -> None:
        """A reload found the active config again: any earlier refusal is over."""
        self.last_error = None
        self.last_error_at = None
        log.info("config %s unchanged", self.snapshot.version)

    def reject(self, error: str) -> None:
        self.stats.reloads["failure"] = self.stats.reloads.get("failure", 0) + 1
        self.last_error = error
        self.last_error_at = time.time()
        log.error("config rejected, keeping %s: %s", self.snapshot.version or "no config", error)

    def listener(self, name: str) -> ListenerRuntime | None:
        return self.snapshot.listeners.get(name)

    # -- stream accounting, for graceful drain ------------------------------------------------

    def stream_started(self) -> None:
        self.active_streams += 1

    def stream_ended(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no stream is in flight (used by the drain)."""
        while self.active_streams:
            self._idle = anyio.Event()
            await self._idle.wait()
