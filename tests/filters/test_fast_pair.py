"""The built-in resilience layers' fast pairs are equivalent to their ``around_upstream``.

The default stack (retry → circuit-breaker → load-balancer, as the translator
orders it) runs the same request sequence twice over a scripted upstream: once
composed as coroutines (``ChainRun.compose``), once through the fast pairs
(``LayerPass``, what the inline path uses). The callers' results, the tries the
upstream saw (endpoints included), and the cluster's shared state afterwards
(counters, retry budget, limits, outlier state, balancer in-flight counts) must
be the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from plait.core._layers import LayerPass
from plait.core.chain import Chain
from plait.core.config._model import FilterEntry
from plait.filters.circuit_breaker import CIRCUIT_BREAKER
from plait.filters.load_balancer import LOAD_BALANCER
from plait.filters.retry import RETRY
from plait.filters.retry import _filter as retry_module
from plait.sdk import (
    FailStrategy,
    UpstreamCluster,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
)
from tests.filters._upstream import Outcome, Script, cluster, context, request


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_module, "_draw", lambda: 0.0)  # zero jitter: no real sleeps


class ByEndpoint(Script):
    """The outcome depends on the endpoint: ``outcome(key, n)`` for the n-th try overall."""

    def __init__(self, upstream: UpstreamCluster, outcome: Callable[[str, int], Outcome]) -> None:
        super().__init__(upstream, 200)
        self.outcome = outcome

    async def __call__(self, ctx: Any, req: Any) -> Any:
        keys = [e.key for e in self.upstream.endpoints]
        key = req.endpoint or next((k for k in keys if k not in req.exclude), keys[0])
        self.outcomes = [self.outcome(key, len(self.tries))]
        return await super().__call__(ctx, req)


def _stack(
    name: str, retry: dict[str, Any], breaker: dict[str, Any] | None = None, lb: str = "RoundRobin"
) -> Chain:
    """retry + circuit-breaker + load-balancer for cluster ``name`` (defaults: breaker
    defaults, round robin)."""

    def entry(spec: Any, raw: dict[str, Any]) -> FilterEntry:
        assert spec.parse_config is not None
        return FilterEntry(
            name=spec.name,
            spec=spec,
            config=spec.parse_config(raw),
            fail_strategy=FailStrategy.FAIL_CLOSED,
        )

    return Chain(
        [
            entry(RETRY, retry),
            entry(CIRCUIT_BREAKER, {"clusters": {name: breaker or {}}}),
            entry(LOAD_BALANCER, {"clusters": {name: {"type": lb}}}),
        ]
    )


def _timeless(state: object) -> object:
    """``state`` without the figures that depend on the clock (latency, time left)."""
    if isinstance(state, dict):
        return {k: _timeless(v) for k, v in state.items() if k not in ("ewmaMs", "ejectedForS")}
    return state


def _run(
    fast: bool,
    make_script: Callable[[UpstreamCluster], Script],
    n: int,
    method: str = "GET",
    **stack: Any,
) -> tuple[list[object], list[str], object]:
    upstream = cluster(3)
    chain = _stack(upstream.name, **stack)
    script = make_script(upstream)
    results: list[object] = []

    async def go() -> None:
        for _ in range(n):
            ctx = context(upstream, method)
            run = chain.start(ctx)
            req = request(ctx, b"body" if method == "POST" else b"")
            try:
                if fast:
                    response = await LayerPass(run, req).call(script)
                else:
                    response = await run.compose(script)(ctx, req)
                results.append(response.head.status)
            except UpstreamError as exc:
                results.append(f"{type(exc).__name__}: {exc.reason}")

    anyio.run(go)
    return results, script.endpoints, _timeless(upstream.describe())


SCENARIOS: dict[str, dict[str, Any]] = {
    "one in three 503, retried": dict(
        make_script=lambda up: Script(up, 503, 200, 200, 503, 200, 200, 503, 200),
        n=30,
        retry={"codes": [503], "attempts": 2},
        expect={"retry"},
    ),
    "one endpoint always 500: ejected": dict(
        make_script=lambda up: ByEndpoint(up, lambda key, i: 500 if key.endswith("0:80") else 200),
        n=40,
        retry={"codes": [500], "attempts": 1},
        breaker={"consecutive5xx": 2, "maxEjectionPercent": 100},
        expect={"retry", "ejection"},
    ),
    "every endpoint 500: all ejected": dict(
        make_script=lambda up: Script(up, 500),
        n=12,
        retry={"codes": [500], "attempts": 1},
        breaker={"consecutive5xx": 1, "maxEjectionPercent": 100},
        expect={"ejection", "ejected_all"},
    ),
    "connect failures, POST": dict(
        make_script=lambda up: ByEndpoint(
            up, lambda key, i: UpstreamConnectError("refused") if key.endswith("1:80") else 201
        ),
        n=20,
        method="POST",
        retry={"attempts": 2},
        expect={"retry", "ejection"},
    ),
    "upstream resets everything: budget exhausted": dict(
        make_script=lambda up: Script(up, UpstreamReset("reset")),
        n=30,
        retry={"attempts": 2, "budgets": {"svc.default:80": {"percent": 0, "minRetryCount": 3}}},
        expect={"retry", "retry_budget_exhausted"},
    ),
    "all fine, P2C peak-EWMA": dict(
        make_script=lambda up: Script(up, 200),
        n=30,
        retry={"codes": [503], "attempts": 2},
        breaker={"maxRequests": 5},
        lb="LeastRequest",
        expect=set(),
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fast_pairs_leave_the_same_results_tries_and_state(scenario: str) -> None:
    kw = dict(SCENARIOS[scenario])
    expect = kw.pop("expect")
    composed = _run(False, **kw)
    paired = _run(True, **kw)
    results, endpoints, state = composed
    assert paired[0] == results
    if kw.get("lb", "RoundRobin") == "RoundRobin":  # (P2C's choices depend on measured latency)
        assert paired[1] == endpoints
    else:
        assert len(paired[1]) == len(endpoints)
    assert paired[2] == state
    assert isinstance(state, dict)
    assert {name for name, n in state["counters"].items() if n} >= expect  # it did happen
    assert state["limits"] == {"active": 0, "pending": 0}  # every slot given back


def test_a_full_breaker_sends_the_pass_to_around_upstream_which_overflows() -> None:
    upstream = cluster(3)
    chain = _stack(
        upstream.name,
        retry={"attempts": 2},
        breaker={"maxConnections": 1, "maxPendingRequests": 0},
        lb="RoundRobin",
    )
    inner: list[object] = []

    async def slow(ctx: Any, req: Any) -> Any:
        ctx2 = context(upstream)
        try:  # a second request while this one holds the only slot
            await LayerPass(chain.start(ctx2), request(ctx2)).call(Script(upstream, 200))
        except UpstreamError as exc:
            inner.append(exc.reason)
        return await Script(upstream, 200)(ctx, req)

    async def go() -> int:
        ctx = context(upstream)
        response = await LayerPass(chain.start(ctx), request(ctx)).call(slow)
        return response.head.status

    assert anyio.run(go) == 200
    assert inner == ["overflow"]
    described = upstream.describe()
    assert described["counters"] == {"overflow": 1}
    assert described["limits"] == {"active": 0, "pending": 0}
