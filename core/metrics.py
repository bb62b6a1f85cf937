"""Sidecar metrics, kept off the request path and rendered in the Prometheus text format.

Recording a request costs one dict lookup and a scan of the bucket bounds (well
under a microsecond): its mesh labels (``mesh_labels.py``) are interned once per peer pair
to a small integer, its *series*, and the request count of a label set is the
count of its duration histogram, so one list holds both. prometheus-client's
labelled ``Counter.labels(...).inc()`` costs
more than that per call on this hot path, so the counts live in plain dicts and
are turned into the text exposition format (version 0.0.4) only when
``/metrics`` is scraped (the "batch metrics off the request path" rule of
architecture.md §6). The renderer is a few lines (``_prom_text.py``) rather than
prometheus-client's registry and exposition modules: importing that package
costs every sidecar ~3 MB of memory (measured in the sidecar's own import set),
for output this small. The tests parse the output with prometheus-client's own
parser (a test-only dependency) to keep the two in agreement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final

from plait.sdk.metrics import REGISTRY, Family

from ._prom_text import Labels, family, filter_histogram, go_float, sample
from .mesh_labels import MESH_LABELS, UNKNOWN

__all__ = ["BUCKETS", "FAMILIES", "Stats"]

# Seconds; Envoy/Istio-like spread from 0.5 ms to 60 s. Typed as a variable-length tuple so
# that the compiled module keeps it as one Python tuple: a fixed-length one is held unboxed
# and would be boxed again (16 floats and a tuple) wherever it is used as an object.
BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip

FAMILIES: Final[tuple[str, ...]] = (
    "plait_requests_total", "plait_request_duration_seconds",
    "plait_request_duration_seconds_bucket", "plait_request_duration_seconds_count",
    "plait_request_duration_seconds_sum", "plait_connections_active", "plait_connections_total",
    "plait_http2_connection_errors_total", "plait_inbound_connections_total",
    "plait_inbound_mtls_refused_total", "plait_filter_failures_total",
    "plait_upstream_events_total", "plait_cert_expiry_seconds", "plait_cert_generation",
    "plait_cert_renewals_total", "plait_config_reloads_total", "plait_config_info",
    "plait_config_age_seconds", "plait_upstream_endpoints_ejected",
)  # fmt: skip
"""The sidecar's own metric names: no filter's instrument (``plait.sdk.metrics``) may take one."""
REGISTRY.reserve(FAMILIES)


class Stats:
    """Counters for one sidecar process."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], int] = {}
        """Mesh label values (``MESH_LABELS``) → their series number."""
        self.series_values: list[tuple[str, ...]] = []
        """Series number → its mesh label values."""
        self.requests: dict[tuple[int, int, str, str], list[float]] = {}
        """``(series, code, grpc status, reason)`` → the duration histogram: the count in
        each bucket of ``BUCKETS`` and ``+Inf``, then the sum of the durations."""
        self._last_series = -1
        self._last_status = -1
        self._last_grpc = ""
        self._last_reason = ""
        self._last_h: list[float] = []
        """The labels of the latest request and their histogram (``requests`` only grows, so
        the list stays the one in it)."""
        self.filter_failures: dict[str, int] = {}
        self.connections_active: dict[str, int] = {}
        self.connections_total: dict[str, int] = {}
        self.reloads: dict[str, int] = {}
        self.http2_errors: dict[str, int] = {}
        """Downstream HTTP/2 connections closed for a connection error, by reason."""
        self.inbound_transport: dict[tuple[str, str], int] = {}
        """Connections accepted on mTLS-capable inbound listeners, by (listener, transport):
        ``mtls`` or ``plaintext``."""
        self.inbound_refused: dict[tuple[str, str], int] = {}
        """Connections refused by inbound mTLS, by (listener, reason)."""
        self.config_version = ""
        self.config_timestamp = 0.0
        self.upstream_source: Callable[[], dict[str, dict[str, int]]] | None = None
        """Per-cluster event counters of the upstream layers (``UpstreamCluster.counters``),
        read at scrape time; set by the runtime."""
        self.upstream_added: dict[tuple[str, str], int] = {}
        """Counters summed in from other worker processes (:meth:`add_json`)."""
        self.ejected_source: Callable[[], dict[str, int]] | None = None
        """Per-cluster count of endpoints outlier detection keeps out (ejected or on
        probation), read at scrape time; set by the runtime."""
        self.ejected_added: dict[str, int] = {}
        """The same, summed in from other worker processes (:meth:`add_json`)."""
        self.identity_source: Callable[[], dict[str, float]] | None = None
        """The mesh identity's numbers (``plait.core.identity.status.metric_values``), read
        at scrape time; set by the sidecar when it has an identity source."""
        self.identity_added: dict[str, float] = {}
        """The identity numbers of other worker processes, combined (:meth:`add_json`)."""
        self.filter_added: dict[str, Family] = {}
        """The filters' instruments of other worker processes, summed (:meth:`add_json`)."""

    def identity(self) -> dict[str, float]:
        """This process's identity numbers combined with the workers' added ones: counts
        summed, the seconds left and the generation the smallest (the stalest worker)."""
        own = self.identity_source() if self.identity_source is not None else {}
        return _combine_identity(self.identity_added, own)

    def ejected(self) -> dict[str, int]:
        out = dict(self.ejected_added)
        if self.ejected_source is not None:
            for cluster, n in self.ejected_source().items():
                out[cluster] = out.get(cluster, 0) + n
        return out

    def upstream_events(self) -> dict[tuple[str, str], int]:
        out = dict(self.upstream_added)
        if self.upstream_source is not None:
            for cluster, counters in self.upstream_source().items():
                for event, n in counters.items():
                    out[(cluster, event)] = out.get((cluster, event), 0) + n
        return out

    def series_of(self, values: tuple[str, ...]) -> int:
        """The series number of a set of mesh label values (made on first use)."""
        n = self.series.get(values)
        if n is None:
            n = self.series[values] = len(self.series_values)
            self.series_values.append(values)
        return n

    def observe(self, series: int, status: int, grpc: str, reason: str, seconds: float) -> None:
        """One request: the per-request cost of the metrics."""
        if (
            series == self._last_series and status == self._last_status
            and grpc == self._last_grpc and reason == self._last_reason
        ):  # fmt: skip
            h = self._last_h  # the same labels as the request before: no tuple, no hashing
        else:
            key = (series, status, grpc, reason)
            got = self.requests.get(key)
            if got is None:
                got = self.requests[key] = [0.0] * (len(BUCKETS) + 2)
            h = self._last_h = got
            self._last_series, self._last_status = series, status
            self._last_grpc, self._last_reason = grpc, reason
        at = 0  # the first bucket whose bound is >= seconds (Prometheus: le), else +Inf
        for bound in BUCKETS:
            if seconds <= bound:
                break
            at += 1
        h[at] += 1
        h[-1] += seconds

    def record(self, listener: str, status: int, seconds: float, reason: str | None) -> None:
        """A request refused before it had an exchange (a malformed head): only its listener
        is known of its mesh labels."""
        values = (listener, *([UNKNOWN] * (len(MESH_LABELS) - 1)))
        self.observe(self.series_of(values), status, "", reason or "", seconds)

    def filter_failed(self, name: str) -> None:
        self.filter_failures[name] = self.filter_failures.get(name, 0) + 1

    def connection_opened(self, listener: str) -> None:
        self.connections_active[listener] = self.connections_active.get(listener, 0) + 1
        self.connections_total[listener] = self.connections_total.get(listener, 0) + 1

    def connection_closed(self, listener: str) -> None:
        self.connections_active[listener] -= 1

    def http2_error(self, reason: str) -> None:
        self.http2_errors[reason] = self.http2_errors.get(reason, 0) + 1

    def inbound_accepted(self, listener: str, transport: str) -> None:
        key = (listener, transport)
        self.inbound_transport[key] = self.inbound_transport.get(key, 0) + 1

    def inbound_refusal(self, listener: str, reason: str) -> None:
        key = (listener, reason)
        self.inbound_refused[key] = self.inbound_refused.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """The raw counters, for a ``--workers`` supervisor to sum (:meth:`add_json`)."""
        return {
            "requests": [
                [list(self.series_values[series]), code, grpc, reason, h]
                for (series, code, grpc, reason), h in self.requests.items()
            ],
            "filter_failures": self.filter_failures,
            "connections_active": self.connections_active,
            "connections_total": self.connections_total,
            "reloads": self.reloads,
            "http2_errors": self.http2_errors,
            "config_version": self.config_version,
            "config_timestamp": self.config_timestamp,
            "upstream_events": [[c, e, n] for (c, e), n in self.upstream_events().items()],
            "ejected": self.ejected(),
            "inbound_transport": [[x, t, n] for (x, t), n in self.inbound_transport.items()],
            "inbound_refused": [[x, r, n] for (x, r), n in self.inbound_refused.items()],
            "identity": self.identity(),
            "filter_metrics": [
                [name, kind, help_, list(labels), [[*k, v] for k, v in values.items()]]
                for name, kind, help_, labels, values in self.filter_metrics()
            ],
        }

    def filter_metrics(self) -> list[Family]:
        """The filters' instruments of this process (``plait.sdk.metrics``) and the
        workers' (:meth:`add_json`), summed by name and label values."""
        out = {
            name: (name, k, h, ls, dict(vs)) for name, k, h, ls, vs in self.filter_added.values()
        }
        for name, kind, help_, labels, values in REGISTRY.collect():
            have = out.get(name)
            if have is None or have[3] != labels:
                out[name] = (name, kind, help_, labels, values)
                continue
            for key, v in values.items():
                have[4][key] = have[4].get(key, 0.0) + v
        return [out[name] for name in sorted(out)]

    def add_json(self, data: dict[str, Any]) -> None:
        """Add another process's counters (from :meth:`to_json`) to these."""
        for values, code, grpc, reason, buckets in data["requests"]:
            series = self.series_of(tuple(str(v) for v in values))
            key = (series, int(code), str(grpc), str(reason))
            mine = self.requests.setdefault(key, [0.0] * (len(BUCKETS) + 2))
            for i, v in enumerate(buckets):
                mine[i] += v
        for field in (
            "filter_failures",
            "connections_active",
            "connections_total",
            "reloads",
            "http2_errors",
        ):
            mine_d: dict[str, int] = getattr(self, field)
            for name, n in data.get(field, {}).items():
                mine_d[name] = mine_d.get(name, 0) + n
        for cluster, event, n in data.get("upstream_events", ()):
            ukey = (str(cluster), str(event))
            self.upstream_added[ukey] = self.upstream_added.get(ukey, 0) + int(n)
        for cluster, n in data.get("ejected", {}).items():
            self.ejected_added[cluster] = self.ejected_added.get(cluster, 0) + int(n)
        for attr in ("inbound_transport", "inbound_refused"):
            pairs: dict[tuple[str, str], int] = getattr(self, attr)
            for a, b, n in data.get(attr, ()):
                pkey = (str(a), str(b))
                pairs[pkey] = pairs.get(pkey, 0) + int(n)
        for name, kind, help_, labels, rows in data.get("filter_metrics", ()):
            fam = self.filter_added.get(name)
            if fam is None or list(fam[3]) != labels:
                fam = self.filter_added[name] = (name, kind, help_, tuple(labels), {})
            for row in rows:
                labelled = tuple(str(x) for x in row[:-1])
                fam[4][labelled] = fam[4].get(labelled, 0.0) + float(row[-1])
        theirs = data.get("identity") or {}
        self.identity_added = _combine_identity(
            self.identity_added, {str(k): float(v) for k, v in theirs.items()}
        )
        if data["config_timestamp"] >= self.config_timestamp:
            self.config_version = data["config_version"]
            self.config_timestamp = data["config_timestamp"]

    def render(self) -> bytes:
        """Every counter in the Prometheus text exposition format (0.0.4)."""
        out: list[str] = []
        self._render_requests(out)
        listeners = sorted(self.connections_total)
        active = [((("listener", x),), self.connections_active.get(x, 0)) for x in listeners]
        family(out, "plait_connections_active", "gauge", "Open downstream connections", active)
        total = [((("listener", x),), self.connections_total[x]) for x in listeners]
        family(out, "plait_connections_total", "counter", "Accepted downstream connections", total)
        h2 = [((("reason", r),), n) for r, n in sorted(self.http2_errors.items())]
        family(
            out,
            "plait_http2_connection_errors_total",
            "counter",
            "Downstream HTTP/2 connections closed with GOAWAY for the peer's error, by reason",
            h2,
        )
        accepted = [
            ((("listener", x), ("transport", t)), n)
            for (x, t), n in sorted(self.inbound_transport.items())
        ]
        family(
            out,
            "plait_inbound_connections_total",
            "counter",
            "Connections accepted on inbound listeners that take mTLS, by transport",
            accepted,
        )
        refused = [
            ((("listener", x), ("reason", r)), n)
            for (x, r), n in sorted(self.inbound_refused.items())
        ]
        family(
            out,
            "plait_inbound_mtls_refused_total",
            "counter",
            "Inbound connections refused by mTLS (peer authentication), by reason",
            refused,
        )
        failures = [((("filter", f),), n) for f, n in sorted(self.filter_failures.items())]
        family(out, "plait_filter_failures_total", "counter", "Filter hook failures", failures)
        for name, kind, help_, labels, values in self.filter_metrics():
            if kind == "histogram":
                filter_histogram(out, name, help_, labels, values)
                continue
            samples = [
                (tuple(sorted(zip(labels, key, strict=True))), v)
                for key, v in sorted(values.items())
            ]
            family(out, name, kind, help_, samples)
        events = [
            ((("cluster", c), ("event", e)), n)
            for (c, e), n in sorted(self.upstream_events().items())
        ]
        family(
            out,
            "plait_upstream_events_total",
            "counter",
            "Upstream layer events by cluster (retries, budget exhaustion, ejections, ...)",
            events,
        )
        ejected = [((("cluster", c),), n) for c, n in sorted(self.ejected().items())]
        family(out, "plait_upstream_endpoints_ejected", "gauge",
               "Endpoints outlier detection keeps out now (ejected or on probation), by cluster",
               ejected)  # fmt: skip
        self._render_identity(out)
        reloads = [((("result", r),), n) for r, n in sorted(self.reloads.items())]
        family(out, "plait_config_reloads_total", "counter", "Config reloads", reloads)
        info = [((("version", self.config_version),), self.config_timestamp)]
        family(
            out,
            "plait_config_info",
            "gauge",
            "The active config version (value: load time)",
            info,
        )
        loaded = self.config_timestamp
        age = [((), max(0.0, time.time() - loaded))] if loaded else []
        family(out, "plait_config_age_seconds", "gauge",
               "Seconds since the active config was loaded", age)  # fmt: skip
        out.append("")
        return "\n".join(out).encode()

    def _render_requests(self, out: list[str]) -> None:
        rows = sorted(
            (
                (*zip(MESH_LABELS, self.series_values[series], strict=True), ("code", str(code)),
                 ("grpc_response_status", grpc), ("reason", reason)),
                h,
            )
            for (series, code, grpc, reason), h in self.requests.items()
        )  # fmt: skip
        family(out, "plait_requests_total", "counter",
               "Requests by mesh labels, response code, gRPC status and failure reason",
               [(labels, sum(h[:-1])) for labels, h in rows])  # fmt: skip
        name = "plait_request_duration_seconds"
        family(out, name, "histogram", "Request duration, by the labels of the requests", [])
        for by, h in rows:
            cumulative = 0.0
            for bound, in_bucket in zip((*BUCKETS, math.inf), h[:-1], strict=True):
                cumulative += in_bucket
                le: Labels = (*by, ("le", go_float(bound)))
                out.append(sample(f"{name}_bucket", le, cumulative))
            out.append(sample(f"{name}_count", by, cumulative))
            out.append(sample(f"{name}_sum", by, h[-1]))

    def _render_identity(self, out: list[str]) -> None:
        ident = self.identity()
        if not ident:  # no identity source: the families are left out
            return
        if "expiry_seconds" in ident:
            family(out, "plait_cert_expiry_seconds", "gauge",
                    "Seconds until the current workload certificate expires",
                    [((), ident["expiry_seconds"])])  # fmt: skip
        family(out, "plait_cert_generation", "gauge",
                "Certificates put in the identity store since the start (the store's generation)",
                [((), ident.get("generation", 0.0))])  # fmt: skip
        results = [((("result", r),), ident.get(r, 0.0)) for r in ("error", "ok")]
        family(out, "plait_cert_renewals_total", "counter",
                "Attempts to get or reload the workload certificate, by result",
                results)  # fmt: skip


def _combine_identity(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    if not a or not b:
        return dict(a or b)
    out = {k: a.get(k, 0.0) + b.get(k, 0.0) for k in ("ok", "error")}
    for k in ("expiry_seconds", "generation"):
        values = [d[k] for d in (a, b) if k in d]
        if values:
            out[k] = min(values)
    return out
