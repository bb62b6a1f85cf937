"""``circuit-breaker``: per-cluster limits and outlier ejection around each try.

Theory of operation: an ``around_upstream`` layer inside ``retry`` (so every
retry is limited and observed like a first try) and outside the load balancer
(so the balancer only sees endpoints that are not ejected). Per try:

1. take a slot from the cluster's :class:`Limits` (or fail with 503
   ``overflow``);
2. ask :class:`Outliers` which endpoints are ejected, and add them to
   ``UpstreamRequest.exclude``; if one is due for its probe, send this try to
   it (``UpstreamRequest.endpoint``); if every endpoint is ejected, fail with
   503 ``ejected``;
3. call the next layer, then record the outcome for ``ctx.upstream_address``:
   the response status, or a local failure (connect failure, reset, timeout).

State lives in the cluster's shared stash, so it is shared by every stream and
route to the cluster and survives config reloads while the endpoints are
unchanged. Per-cluster counters: ``overflow``, ``ejection``, ``readmission``,
``ejection_skipped_max_percent``, ``ejected_all``; ``/config_dump`` shows each
endpoint's state under ``clusterState.<cluster>.outlier``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from plait.sdk import (
    CallNext,
    NoHealthyUpstream,
    StashKey,
    StreamContext,
    UpstreamCluster,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamReset,
    UpstreamResponse,
    UpstreamTimeout,
)

from ._config import BreakerConfig, CircuitBreakerConfig
from ._limits import Limits, Overflow
from ._outlier import Outliers

__all__ = ["AllEjected", "CircuitBreaker"]

_LOCAL_FAILURES = (UpstreamConnectError, UpstreamReset, UpstreamTimeout)


class AllEjected(NoHealthyUpstream):
    """Every endpoint of the cluster is ejected (no panic routing)."""

    status_hint = 503
    reason = "ejected"


@dataclass(slots=True)
class _State:
    limits: Limits
    outliers: Outliers


_STATE: StashKey[_State] = StashKey("circuit-breaker.state")


def _state(cluster: UpstreamCluster) -> _State:
    state = cluster.stash.get(_STATE, None)
    if state is None:
        state = _State(Limits(), Outliers(tuple(e.key for e in cluster.endpoints)))
        cluster.stash[_STATE] = state
        cluster.reports["limits"] = state.limits.describe
        cluster.reports["outlier"] = lambda: state.outliers.describe(time.monotonic())
    return state


class CircuitBreaker:
    __slots__ = ("_config",)

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self._config = config

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: CallNext
    ) -> UpstreamResponse:
        cluster = ctx.upstream_cluster
        config = self._config.clusters.get(cluster.name) if cluster is not None else None
        if cluster is None or config is None:
            return await call_next(ctx, request)
        state = _state(cluster)
        try:
            await state.limits.acquire(config)
        except Overflow:
            cluster.count("overflow")
            raise
        try:
            return await self._try(ctx, request, call_next, cluster, state, config)
        finally:
            state.limits.release()

    async def _try(
        self,
        ctx: StreamContext,
        request: UpstreamRequest,
        call_next: CallNext,
        cluster: UpstreamCluster,
        state: _State,
        config: BreakerConfig,
    ) -> UpstreamResponse:
        outliers = state.outliers
        now = time.monotonic()
        ejected, probe = outliers.excluded(now, config)
        if probe is not None and request.endpoint is None and probe not in request.exclude:
            outliers.start_probe(probe)
            request.endpoint = probe
        elif ejected:
            if len(ejected) >= len(cluster.endpoints):
                cluster.count("ejected_all")
                raise AllEjected(f"every endpoint of {cluster.name} is ejected")
            request.exclude = request.exclude | ejected
        status = -1
        try:
            response = await call_next(ctx, request)
            status = response.head.status
            return response
        except _LOCAL_FAILURES:
            status = 0
            raise
        finally:
            key = ctx.upstream_address
            if key is not None and status >= 0:
                outliers.record(key, status, time.monotonic(), config)
            elif request.endpoint is not None and request.endpoint == probe:
                outliers.hosts[probe].probe_in_flight = False  # no outcome: probe again
            for event in outliers.events:
                cluster.count(event)
            outliers.events.clear()
