"""The circuit-breaker layer: overflow, pending hand-off, ejection steering the next try."""

from __future__ import annotations

import anyio
import pytest

from plait.filters.circuit_breaker import (
    CIRCUIT_BREAKER,
    AllEjected,
    BreakerConfig,
    CircuitBreaker,
    Limits,
    Overflow,
    parse_circuit_breaker,
)
from plait.sdk.testing import check_filter
from tests.filters._upstream import Script, cluster, context, request


def test_conformance() -> None:
    check_filter(CIRCUIT_BREAKER, {"clusters": {"x": {}}})


def test_limits_queue_then_overflow() -> None:
    cfg = BreakerConfig(max_connections=1, max_pending_requests=1, max_requests=10)
    limits = Limits()
    order: list[str] = []

    async def go() -> None:
        await limits.acquire(cfg)  # the one slot
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                await limits.acquire(cfg)
                order.append("handed")
                limits.release()

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(Overflow):
                await limits.acquire(cfg)  # one pending already
            limits.release()
        assert limits.active == 0 and not limits.waiters

    anyio.run(go)
    assert order == ["handed"]


def test_ejected_endpoint_is_excluded_then_all_ejected_is_503() -> None:
    upstream = cluster(2)
    raw = {upstream.name: {"consecutive5xx": 2, "maxEjectionPercent": 100}}
    breaker = CircuitBreaker(parse_circuit_breaker({"clusters": raw}))
    script = Script(upstream, 500)

    async def one() -> int:
        ctx = context(upstream)
        return (await breaker.around_upstream(ctx, request(ctx), script)).head.status

    async def go() -> None:
        assert [await one() for _ in range(2)] == [500, 500]  # 10.0.0.0 ejected
        assert await one() == 500
        assert script.endpoints[-1] == "10.0.0.1:80"  # steered away from the ejected one
        await one()
        with pytest.raises(AllEjected):
            await one()

    anyio.run(go)
    assert upstream.counters["ejection"] == 2 and upstream.counters["ejected_all"] == 1
    outlier = upstream.describe()["outlier"]
    assert isinstance(outlier, dict) and outlier["10.0.0.0:80"]["state"] == "ejected"
