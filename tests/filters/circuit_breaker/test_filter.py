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
from plait.sdk import StreamContext, UpstreamCluster, UpstreamRequest, UpstreamResponse
from plait.sdk.testing import check_filter
from tests.filters._upstream import Outcome, Script, cluster, context, request, through


def test_conformance() -> None:
    check_filter(CIRCUIT_BREAKER, {"clusters": {"x": {}}})


def test_limits_queue_then_overflow() -> None:
    cfg = BreakerConfig(max_connections=1, max_pending_requests=1, max_requests=10)
    limits = Limits()
    order: list[str] = []

    async def go() -> None:
        assert limits.try_acquire(cfg)  # the one slot
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                await limits.wait(limits.enqueue(cfg))
                order.append("handed")
                limits.release()

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not limits.try_acquire(cfg)
            with pytest.raises(Overflow):
                limits.enqueue(cfg)  # one pending already
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
        return (await through([breaker], ctx, request(ctx), script)).head.status

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


class Held(Script):
    """Answers once ``gate`` is set."""

    def __init__(self, upstream: UpstreamCluster, gate: anyio.Event, *outcomes: Outcome) -> None:
        super().__init__(upstream, *outcomes)
        self.gate = gate

    async def __call__(self, ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        await self.gate.wait()
        return await super().__call__(ctx, request)


def test_a_try_waits_as_pending_for_a_slot_and_past_the_queue_overflows() -> None:
    upstream = cluster(1)
    raw = {upstream.name: {"maxConnections": 1, "maxPendingRequests": 1}}
    breaker = CircuitBreaker(parse_circuit_breaker({"clusters": raw}))
    gate = anyio.Event()
    statuses: list[int] = []

    script = Held(upstream, gate, 200)

    async def one() -> None:
        ctx = context(upstream)
        statuses.append((await through([breaker], ctx, request(ctx), script)).head.status)

    async def go() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)  # holds the one slot
            tg.start_soon(one)  # waits as pending (the core awaits the policy's Pending)
            await anyio.wait_all_tasks_blocked()
            assert upstream.describe()["limits"] == {"active": 1, "pending": 1}
            with pytest.raises(Overflow):
                await one()  # the queue is full
            gate.set()
        assert upstream.describe()["limits"] == {"active": 0, "pending": 0}

    anyio.run(go)
    assert statuses == [200, 200] and len(script.tries) == 2
    assert upstream.counters["overflow"] == 1


def test_a_pending_try_cancelled_leaves_no_slot_taken() -> None:
    upstream = cluster(1)
    raw = {upstream.name: {"maxConnections": 1}}
    breaker = CircuitBreaker(parse_circuit_breaker({"clusters": raw}))
    gate = anyio.Event()

    script = Held(upstream, gate, 200)

    async def one() -> None:
        ctx = context(upstream)
        await through([breaker], ctx, request(ctx), script)

    async def go() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            with anyio.move_on_after(0.05):
                await one()  # pending, then the client leaves
            assert upstream.describe()["limits"] == {"active": 1, "pending": 0}
            gate.set()
        assert upstream.describe()["limits"] == {"active": 0, "pending": 0}

    anyio.run(go)
