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

A policy (sdk/_policy.py): steps 1-2 are ``before_try``, the recording in 3 is
``after_try``. When no slot is free, the try waits for one as pending: the
policy answers ``Pending`` and the core awaits the slot.

State lives in the cluster's shared stash, so it is shared by every stream and
route to the cluster and survives config reloads while the endpoints are
unchanged. Per-cluster counters: ``overflow``, ``ejection``, ``readmission``,
``ejection_skipped_max_percent``, ``ejected_all``; ``/config_dump`` shows each
endpoint's state under ``clusterState.<cluster>.outlier``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from plait.sdk import (
    HttpFilter,
    NoHealthyUpstream,
    Pending,
    StashKey,
    StreamContext,
    TryOutcome,
    UpstreamCluster,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamReset,
    UpstreamTimeout,
)

from ._config import BreakerConfig, CircuitBreakerConfig
from ._limits import Limits, Overflow
from ._outlier import Outliers

__all__ = ["AllEjected", "CircuitBreaker"]

_monotonic: Final = time.monotonic  # compiled: a C static, not a module attribute lookup per call

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


class _Try:
    """One try holding a slot (the policy's state; a plain class, see retry's ``_First``)."""

    __slots__ = ("cluster", "config", "probe", "state")

    def __init__(self, cluster: UpstreamCluster, config: BreakerConfig, state: _State) -> None:
        self.cluster = cluster
        self.config = config
        self.state = state
        self.probe: str | None = None


class CircuitBreaker(HttpFilter):
    __slots__ = ("_config",)

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self._config = config

    def before_try(
        self, ctx: StreamContext, request: UpstreamRequest
    ) -> _Try | Pending[_Try] | None:
        cluster = ctx.upstream_cluster
        config = self._config.clusters.get(cluster.name) if cluster is not None else None
        if cluster is None or config is None:
            return None
        state = _state(cluster)
        one = _Try(cluster, config, state)
        if not state.limits.try_acquire(config):
            return Pending(_queued(one, request))  # (it may also overflow at once)
        _steer(one, request)
        return one

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[_Try | None]
    ) -> None:
        if (one := outcome.state) is not None:
            if outcome.response is not None:
                status = outcome.response.head.status
            else:
                status = 0 if isinstance(outcome.error, _LOCAL_FAILURES) else -1
            _done(one, ctx, status)


async def _queued(one: _Try, request: UpstreamRequest) -> _Try:
    """No slot was free: the try waits as pending for one (or overflows), then it is
    steered like any other. Queued only once awaited, so a request abandoned before
    leaves nothing in the queue."""
    limits = one.state.limits
    try:
        waiter = limits.enqueue(one.config)
    except Overflow:
        one.cluster.count("overflow")
        raise
    await limits.wait(waiter)
    _steer(one, request)  # (gives the slot back itself if it raises)
    return one


def _done(one: _Try, ctx: StreamContext | None, status: int) -> None:
    """The try ended: give its slot back, record its outcome (``status``: the response's;
    0 a local failure; -1 none, e.g. cancelled) for the endpoint it went to."""
    cluster, outliers = one.cluster, one.state.outliers
    one.state.limits.release()
    key = ctx.upstream_address if ctx is not None else None
    if key is not None and status >= 0:
        outliers.record(key, status, _monotonic(), one.config)
    elif one.probe is not None:
        outliers.hosts[one.probe].probe_in_flight = False  # no outcome: probe again
    if outliers.events:
        for event in outliers.events:
            cluster.count(event)
        outliers.events.clear()


def _steer(one: _Try, request: UpstreamRequest) -> None:
    """Keep this try off ejected endpoints; send it as the probe (``one.probe``) of one
    whose ejection ended. Every endpoint ejected: the slot is given back, ``AllEjected``."""
    outliers, cluster = one.state.outliers, one.cluster
    now = _monotonic()
    if not outliers.out and now < outliers.next_sweep:
        return
    ejected, probe = outliers.excluded(now, one.config)
    if probe is not None and request.endpoint is None and probe not in request.exclude:
        outliers.start_probe(probe)
        request.endpoint = one.probe = probe
        return
    if ejected:
        if len(ejected) >= len(cluster.endpoints):
            cluster.count("ejected_all")
            _done(one, None, -1)
            raise AllEjected(f"every endpoint of {cluster.name} is ejected")
        request.exclude = request.exclude | ejected
