"""Sidecar metrics, kept off the request path and rendered by prometheus-client.

Recording a request costs two dict updates and a bisect (well under a
microsecond); prometheus-client's labelled ``Counter.labels(...).inc()`` costs
more than that per call on this hot path, so the counts live in plain dicts and a
custom collector turns them into metric families only when ``/metrics`` is
scraped (the "batch metrics off the request path" rule of architecture.md §6).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "Stats"]

# Seconds; Envoy/Istio-like spread from 0.5 ms to 60 s.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0, 30.0, 60.0)  # fmt: skip


class Stats(Collector):
    """Counters for one sidecar process."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int, str], int] = {}
        self.hist: dict[str, list[float]] = {}
        self.filter_failures: dict[str, int] = {}
        self.connections_active: dict[str, int] = {}
        self.connections_total: dict[str, int] = {}
        self.reloads: dict[str, int] = {}
        self.config_version = ""
        self.config_timestamp = 0.0
        self.upstream_source: Callable[[], dict[str, dict[str, int]]] | None = None
        """Per-cluster event counters of the upstream layers (``UpstreamCluster.counters``),
        read at scrape time; set by the runtime."""
        self.upstream_added: dict[tuple[str, str], int] = {}
        """Counters summed in from other worker processes (:meth:`add_json`)."""

    def upstream_events(self) -> dict[tuple[str, str], int]:
        out = dict(self.upstream_added)
        if self.upstream_source is not None:
            for cluster, counters in self.upstream_source().items():
                for event, n in counters.items():
                    out[(cluster, event)] = out.get((cluster, event), 0) + n
        return out

    def record(self, listener: str, status: int, seconds: float, reason: str | None) -> None:
        key = (listener, status, reason or "")
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.hist.get(listener)
        if h is None:
            h = self.hist[listener] = [0.0] * (len(BUCKETS) + 2)
        h[bisect_left(BUCKETS, seconds)] += 1
        h[-1] += seconds

    def filter_failed(self, name: str) -> None:
        self.filter_failures[name] = self.filter_failures.get(name, 0) + 1

    def connection_opened(self, listener: str) -> None:
        self.connections_active[listener] = self.connections_active.get(listener, 0) + 1
        self.connections_total[listener] = self.connections_total.get(listener, 0) + 1

    def connection_closed(self, listener: str) -> None:
        self.connections_active[listener] -= 1

    def to_json(self) -> dict[str, Any]:
        """The raw counters, for a ``--workers`` supervisor to sum (:meth:`add_json`)."""
        return {
            "requests": [[*key, n] for key, n in self.requests.items()],
            "hist": self.hist,
            "filter_failures": self.filter_failures,
            "connections_active": self.connections_active,
            "connections_total": self.connections_total,
            "reloads": self.reloads,
            "config_version": self.config_version,
            "config_timestamp": self.config_timestamp,
            "upstream_events": [[c, e, n] for (c, e), n in self.upstream_events().items()],
        }

    def add_json(self, data: dict[str, Any]) -> None:
        """Add another process's counters (from :meth:`to_json`) to these."""
        for listener, code, reason, n in data["requests"]:
            key = (listener, int(code), reason)
            self.requests[key] = self.requests.get(key, 0) + n
        for listener, buckets in data["hist"].items():
            mine = self.hist.setdefault(listener, [0.0] * (len(BUCKETS) + 2))
            for i, v in enumerate(buckets):
                mine[i] += v
        for field in ("filter_failures", "connections_active", "connections_total", "reloads"):
            mine_d: dict[str, int] = getattr(self, field)
            for name, n in data[field].items():
                mine_d[name] = mine_d.get(name, 0) + n
        for cluster, event, n in data.get("upstream_events", ()):
            ukey = (str(cluster), str(event))
            self.upstream_added[ukey] = self.upstream_added.get(ukey, 0) + int(n)
        if data["config_timestamp"] >= self.config_timestamp:
            self.config_version = data["config_version"]
            self.config_timestamp = data["config_timestamp"]

    def collect(self) -> Iterator[Metric]:
        req = CounterMetricFamily(
            "plait_requests", "Requests by listener, response code and failure reason",
            labels=["listener", "code", "reason"],
        )  # fmt: skip
        for (listener, code, reason), n in sorted(self.requests.items()):
            req.add_metric([listener, str(code), reason], n)
        yield req
        dur = HistogramMetricFamily(
            "plait_request_duration_seconds", "Request duration", labels=["listener"]
        )
        for listener, h in sorted(self.hist.items()):
            cumulative: float = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, in_bucket in zip((*BUCKETS, float("inf")), h[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((_le(bound), cumulative))
            dur.add_metric([listener], buckets, sum_value=h[-1])
        yield dur
        active = GaugeMetricFamily(
            "plait_connections_active", "Open downstream connections", labels=["listener"]
        )
        total = CounterMetricFamily(
            "plait_connections", "Accepted downstream connections", labels=["listener"]
        )
        for listener in sorted(self.connections_total):
            active.add_metric([listener], self.connections_active.get(listener, 0))
            total.add_metric([listener], self.connections_total[listener])
        yield active
        yield total
        ff = CounterMetricFamily("plait_filter_failures", "Filter hook failures", labels=["filter"])
        for name, n in sorted(self.filter_failures.items()):
            ff.add_metric([name], n)
        yield ff
        ue = CounterMetricFamily(
            "plait_upstream_events",
            "Upstream layer events by cluster (retries, budget exhaustion, ejections, ...)",
            labels=["cluster", "event"],
        )
        for (cluster, event), n in sorted(self.upstream_events().items()):
            ue.add_metric([cluster, event], n)
        yield ue
        rl = CounterMetricFamily("plait_config_reloads", "Config reloads", labels=["result"])
        for result, n in sorted(self.reloads.items()):
            rl.add_metric([result], n)
        yield rl
        info = GaugeMetricFamily(
            "plait_config_info", "The active config version (value: load time)", labels=["version"]
        )
        info.add_metric([self.config_version], self.config_timestamp)
        yield info


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
