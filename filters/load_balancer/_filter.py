"""``load-balancer``: pick the endpoint of each try (innermost resilience layer).

Theory of operation: the picker for a cluster (``_balancers.py``) lives in the
cluster's shared stash, so its latency estimates and in-flight counts cover every
stream and route to the cluster and survive reloads while the endpoints are
unchanged. Per try: unless an outer layer already chose the endpoint (a breaker
probe), pick one not in ``UpstreamRequest.exclude`` (ejected by the breaker,
already tried by a retry) and record it in ``UpstreamRequest.endpoint``; the
core's terminal connects to it. P2C peak-EWMA also times the try, up to the
response head or the failure, and feeds the estimate. A policy
(``before_try``/``after_try``, sdk/_policy.py): plain calls on every try.
"""

from __future__ import annotations

import time
from typing import Final

from plait.sdk import (
    HttpFilter,
    StashKey,
    StreamContext,
    TryOutcome,
    UpstreamCluster,
    UpstreamRequest,
)

from ._balancers import Host, PeakEwma, RingHash, RoundRobin
from ._config import BalancerConfig, LoadBalancerConfig

__all__ = ["LoadBalancer"]

_monotonic: Final = time.monotonic  # compiled: a C static, not a module attribute lookup per call

_Picker = PeakEwma | RingHash | RoundRobin
_PICKER: StashKey[tuple[BalancerConfig, _Picker]] = StashKey("load-balancer.picker")


def _picker(cluster: UpstreamCluster, config: BalancerConfig) -> _Picker:
    found = cluster.stash.get(_PICKER, None)
    if found is not None and (found[0] is config or found[0] == config):
        return found[1]
    picker: _Picker
    if config.type == "RoundRobin":
        picker = RoundRobin(cluster.endpoints)
    elif config.type == "RingHash":
        picker = RingHash(cluster.endpoints)
    else:
        ewma = picker = PeakEwma(cluster.endpoints)
        cluster.reports["loadBalancer"] = lambda: ewma.describe(time.monotonic())
    cluster.stash[_PICKER] = (config, picker)
    return picker


class _Timed:
    """A P2C peak-EWMA try in flight (the policy's state for the try)."""

    __slots__ = ("host", "picker", "start")

    def __init__(self, picker: PeakEwma, host: Host, start: float) -> None:
        self.picker, self.host, self.start = picker, host, start

    def done(self, failed: bool) -> None:
        now = _monotonic()
        self.picker.observe(self.host, now - self.start, now, failed)


class LoadBalancer(HttpFilter):
    __slots__ = ("_config",)

    def __init__(self, config: LoadBalancerConfig) -> None:
        self._config = config

    def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> _Timed | None:
        """Choose the try's endpoint; a P2C peak-EWMA try is timed (the returned state)."""
        cluster = ctx.upstream_cluster
        config = self._config.clusters.get(cluster.name) if cluster is not None else None
        if cluster is None or config is None or not cluster.endpoints:
            return None
        picker = _picker(cluster, config)
        if isinstance(picker, PeakEwma):
            start = _monotonic()
            key = request.endpoint
            if key is None:
                key = request.endpoint = picker.pick(request.exclude, start)
            host = picker.start(key)
            return _Timed(picker, host, start) if host is not None else None
        if request.endpoint is None:
            if isinstance(picker, RingHash):
                value = request.head.headers.get(config.header) if config.header else None
                request.endpoint = picker.pick(value, request.exclude)
            else:
                request.endpoint = picker.pick(request.exclude)
        return None

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[_Timed | None]
    ) -> None:
        if (timed := outcome.state) is not None:
            response = outcome.response
            timed.done(response is None or response.head.status >= 500)
