"""The upstream cluster as ``around_upstream`` layers see it.

A cluster is the set of endpoints one backend (a Service port) has. Layers that
need memory across requests (a retry budget, outlier detection, a load
balancer's latency estimates) keep it in the cluster's :class:`UpstreamCluster`:

* ``stash`` holds each layer's per-cluster state under its own ``StashKey``.
  The core owns the object and keeps it across config swaps as long as the
  cluster's endpoints are unchanged, so a reload never forgets that an endpoint
  is ejected; a changed endpoint set starts afresh.
* ``count(event)`` adds to a per-cluster counter that the sidecar exports in
  ``/metrics`` as ``plait_upstream_events{cluster, event}``.
* ``reports`` maps a name to a function returning a JSON-able description of
  a layer's state; ``/config_dump`` shows them under ``clusterState``.

The core sets ``ctx.upstream_cluster`` before the layers run. A layer steers the
innermost call through the :class:`~plait.sdk.UpstreamRequest` it passes down:
``endpoint`` (the endpoint key to use) and ``exclude`` (keys to avoid when the
core picks itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._context import Stash

__all__ = ["EndpointInfo", "UpstreamCluster"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointInfo:
    """One endpoint of a cluster."""

    key: str
    """``address:port``; the value of ``ctx.upstream_address`` for a call to it."""
    weight: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)


class UpstreamCluster:
    """Per-cluster state shared by every stream to the cluster (see the module docstring)."""

    __slots__ = ("counters", "endpoints", "name", "reports", "stash")

    def __init__(self, name: str, endpoints: tuple[EndpointInfo, ...]) -> None:
        self.name = name
        self.endpoints = endpoints
        self.stash = Stash()
        self.counters: dict[str, int] = {}
        self.reports: dict[str, Callable[[], object]] = {}

    def count(self, event: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``event`` (exported as ``plait_upstream_events``)."""
        self.counters[event] = self.counters.get(event, 0) + n

    def describe(self) -> dict[str, object]:
        """Counters and every layer's report, as JSON-able data."""
        out: dict[str, object] = {"counters": dict(self.counters)}
        for name, report in self.reports.items():
            out[name] = report()
        return out

    def __repr__(self) -> str:
        return f"UpstreamCluster({self.name!r}, {len(self.endpoints)} endpoints)"
