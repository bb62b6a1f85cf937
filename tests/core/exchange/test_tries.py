"""The upstream layers' walk (core/exchange/tries.py): order, retries, refusals, waits.

The walk is part of the exchange machine: these tests step it by hand (what it
yields is what the driver would wait for), or run it with the core's driver.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from plait.core.config import FilterEntry
from plait.core.exchange.actions import Backoff, Steps, Within, drive
from plait.core.exchange.chain import Chain, ChainRun
from plait.core.exchange.tries import tries
from plait.sdk import (
    BufferedBody,
    CallNext,
    FailStrategy,
    FilterSpec,
    HttpFilter,
    Pending,
    ResponseHead,
    StreamContext,
    TryAgain,
    TryOutcome,
    UpstreamConnectError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
)
from plait.sdk.testing import make_context

Log = list[str]


class Policy(HttpFilter):
    """Records its calls. ``again``: statuses it tries again on (``after`` seconds later);
    ``refuse``: raise this from ``before_try``; ``wait``: answer ``Pending``."""

    def __init__(
        self,
        name: str,
        log: Log,
        again: tuple[int, ...] = (),
        after: float = 0.0,
        refuse: Exception | None = None,
        wait: bool = False,
    ) -> None:
        self.name, self.log, self.again, self.after = name, log, again, after
        self.refuse, self.wait = refuse, wait

    def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> Any:
        self.log.append(f"{self.name}.before")
        if self.refuse is not None:
            raise self.refuse
        if self.wait:
            return Pending(self._slot())
        return f"state-{self.name}"

    async def _slot(self) -> str:
        await anyio.sleep(0)
        return f"waited-{self.name}"

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
    ) -> TryAgain | None:
        if outcome.response is not None:
            what = str(outcome.response.head.status)
        else:
            what = type(outcome.error).__name__
        self.log.append(f"{self.name}.after({what},{outcome.state},{outcome.tries})")
        if outcome.response is not None and outcome.response.head.status in self.again:
            return TryAgain(request, after=self.after)
        return None


class Around(HttpFilter):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: CallNext
    ) -> UpstreamResponse:
        self.log.append("around>")
        response = await call_next(ctx, request)
        self.log.append("around<")
        return response


def chain_run(*layers: HttpFilter, fail_open: int = -1) -> ChainRun:
    entries = []
    for i, layer in enumerate(layers):
        spec: FilterSpec[None] = FilterSpec(name=f"l{i}", make=_maker(layer))
        fail = FailStrategy.FAIL_OPEN if i == fail_open else FailStrategy.FAIL_CLOSED
        entries.append(FilterEntry(name=f"l{i}", spec=spec, config=None, fail_strategy=fail))
    return Chain(entries).start(make_context())


def _maker(layer: HttpFilter) -> Callable[[], HttpFilter]:
    return lambda: layer


def upstream(log: Log, *statuses: int) -> Callable[[UpstreamRequest], Steps]:
    """A try answered at once from ``statuses`` in turn (the last repeats)."""
    left = list(statuses)

    def terminal(request: UpstreamRequest) -> Steps:
        status = left.pop(0) if len(left) > 1 else left[0]
        log.append(f"try({status})")
        if status == 0:
            raise UpstreamConnectError("refused")
        return UpstreamResponse(head=ResponseHead(status=status), body=BufferedBody())
        yield  # (a generator, like the core's try)

    return terminal


def request(run: ChainRun) -> UpstreamRequest:
    return UpstreamRequest(head=run.ctx.request, body=BufferedBody())


def walk_sync(run: ChainRun, terminal: Callable[[UpstreamRequest], Steps]) -> UpstreamResponse:
    """Run the walk with no driver: it must not ask for any wait."""
    steps = tries(run, request(run), terminal, drive, math.inf)
    with pytest.raises(StopIteration) as done:
        next(steps)
    response: UpstreamResponse = done.value.value
    return response


def test_policies_are_plain_calls_outermost_first_then_innermost_first() -> None:
    log: Log = []
    run = chain_run(Policy("a", log), Policy("b", log))
    assert walk_sync(run, upstream(log, 200)).head.status == 200
    assert log == [
        "a.before",
        "b.before",
        "try(200)",
        "b.after(200,state-b,1)",
        "a.after(200,state-a,1)",
    ]


def test_try_again_retries_through_the_inner_layers_only_after_the_backoff() -> None:
    log: Log = []
    run = chain_run(Policy("a", log, again=(503,), after=0.25), Policy("b", log))
    steps = tries(run, request(run), upstream(log, 503, 200), drive, math.inf)
    backoff = next(steps)  # the one wait: the driver sleeps it
    assert isinstance(backoff, Backoff) and backoff.seconds == 0.25
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value.head.status == 200
    assert log == [
        "a.before",
        "b.before",
        "try(503)",
        "b.after(503,state-b,1)",
        "a.after(503,state-a,1)",
        "b.before",  # a stays entered: only b is entered again
        "try(200)",
        "b.after(200,state-b,1)",
        "a.after(200,state-a,2)",
    ]


def test_a_refusal_is_the_outcome_of_the_outer_layers_and_no_try_is_made() -> None:
    log: Log = []
    refused = UpstreamConnectError("no slot")
    run = chain_run(Policy("a", log), Policy("b", log, refuse=refused), Policy("c", log))
    with pytest.raises(UpstreamConnectError):
        walk_sync(run, upstream(log, 200))
    assert log == ["a.before", "b.before", "a.after(UpstreamConnectError,state-a,1)"]


def test_an_after_try_that_raises_is_the_outcome_of_the_outer_layers() -> None:
    log: Log = []

    class Raises(Policy):
        def after_try(
            self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
        ) -> TryAgain | None:
            super().after_try(ctx, request, outcome)
            raise UpstreamConnectError("changed its mind")

    run = chain_run(Policy("a", log), Raises("b", log))
    with pytest.raises(UpstreamConnectError):
        walk_sync(run, upstream(log, 200))
    assert log[-1] == "a.after(UpstreamConnectError,state-a,1)"


def test_pending_is_awaited_by_the_driver_and_its_result_is_the_state() -> None:
    log: Log = []
    run = chain_run(Policy("a", log, wait=True))
    response = anyio.run(drive, tries(run, request(run), upstream(log, 204), drive, math.inf))
    assert response.head.status == 204
    assert log == ["a.before", "try(204)", "a.after(204,waited-a,1)"]


def test_closing_the_walk_leaves_every_entered_layer_once_with_a_cancellation() -> None:
    log: Log = []
    run = chain_run(Policy("a", log), Policy("b", log))

    def hanging(request: UpstreamRequest) -> Steps:
        log.append("try")
        yield Backoff(10)  # the client leaves while this is waited for
        raise AssertionError("not reached")

    steps = tries(run, request(run), hanging, drive, math.inf)
    next(steps)
    steps.close()
    assert log == [
        "a.before",
        "b.before",
        "try",
        "b.after(CancelledError,state-b,1)",
        "a.after(CancelledError,state-a,1)",
    ]


def test_around_upstream_in_the_middle_composes_the_inner_walk_into_call_next() -> None:
    log: Log = []
    run = chain_run(Policy("a", log), Around(log), Policy("c", log))
    response = anyio.run(drive, tries(run, request(run), upstream(log, 200), drive, math.inf))
    assert response.head.status == 200
    assert log == [
        "a.before",
        "around>",
        "c.before",
        "try(200)",
        "c.after(200,state-c,1)",
        "around<",
        "a.after(200,state-a,1)",
    ]


def test_a_layer_skipped_for_the_stream_is_not_entered() -> None:
    log: Log = []
    run = chain_run(Policy("a", log), Policy("b", log), fail_open=1)
    run.skipped = {1}  # a FailOpen filter that failed earlier in the stream
    walk_sync(run, upstream(log, 200))
    assert log == ["a.before", "try(200)", "a.after(200,state-a,1)"]


def test_the_outcome_carries_the_requests_deadline() -> None:
    seen: list[float] = []

    class Deadline(HttpFilter):
        def after_try(
            self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
        ) -> None:
            seen.append(outcome.time_left)

    run = chain_run(Deadline())
    deadline = time.monotonic() + 5
    steps = tries(run, request(run), upstream([], 200), drive, deadline)
    with pytest.raises(StopIteration):
        next(steps)
    assert 4 < seen[0] <= 5  # seconds left before the request's deadline


def test_the_driver_serves_the_per_try_timeout_and_the_backoff() -> None:
    """A try that hangs past its deadline fails with the timeout the driver raised in
    it; the policy's ``TryAgain(after=…)`` is slept by the driver, then the next try."""
    log: Log = []

    class OnTimeout(HttpFilter):
        def after_try(
            self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
        ) -> TryAgain | None:
            log.append(type(outcome.error).__name__ if outcome.error else "200")
            if isinstance(outcome.error, UpstreamTimeout) and outcome.tries == 1:
                return TryAgain(request, after=0.2)
            return None

    tries_made: list[float] = []

    def terminal(request: UpstreamRequest) -> Steps:
        tries_made.append(time.monotonic())
        try:
            if len(tries_made) == 1:
                yield Within(anyio.sleep(10), time.monotonic() + 0.1)  # hangs
        except TimeoutError:
            raise UpstreamTimeout("no response in 0.1s") from None
        return UpstreamResponse(head=ResponseHead(status=200), body=BufferedBody())

    run = chain_run(OnTimeout())
    started = time.monotonic()
    response = anyio.run(drive, tries(run, request(run), terminal, drive, math.inf))
    assert response.head.status == 200
    assert log == ["UpstreamTimeout", "200"]
    assert 0.1 <= tries_made[1] - started < 5  # the first try ended at its deadline
    assert tries_made[1] - tries_made[0] >= 0.3  # its 0.1 s, then the 0.2 s backoff
