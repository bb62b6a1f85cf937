"""The layers' fast pairs (core/_layers.py): order, promotion to ``around_upstream``
with the first try, errors, abandonment, and when a chain qualifies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plait.core._layers import LayerPass
from plait.core.chain import Chain
from plait.sdk import (
    RUN_ASYNC,
    BufferedBody,
    CallNext,
    Headers,
    ResponseHead,
    StreamContext,
    UpstreamOutcome,
    UpstreamRequest,
    UpstreamReset,
    UpstreamResponse,
    first_try,
)
from tests.core.test_chain import ctx, entry

pytestmark = pytest.mark.anyio


def _response(status: int) -> UpstreamResponse:
    head = ResponseHead(status=status, headers=Headers())
    return UpstreamResponse(head=head, body=BufferedBody())


class Layer:
    """A layer with the fast pair; ``config``: (name, log, options). Options:
    ``run_async`` (the first half asks for around_upstream), ``retry_on`` (a status its
    second half refuses, so around_upstream retries once), ``raise_in`` ("request" or
    "response"), ``fail_with`` (a status that its first half turns into an error)."""

    def __init__(self, config: tuple[str, list[str], dict[str, Any]]) -> None:
        self.name, self.log, self.opt = config

    def on_upstream_request(self, ctx: StreamContext, request: UpstreamRequest) -> object:
        if self.opt.get("run_async"):
            self.log.append(f"{self.name}.async?")
            return RUN_ASYNC
        self.log.append(f"{self.name}.req")
        if self.opt.get("raise_in") == "request":
            raise UpstreamReset(f"{self.name} refused")
        return f"state-{self.name}"

    def on_upstream_response(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: UpstreamOutcome
    ) -> bool:
        what = outcome.response.head.status if outcome.response else type(outcome.error).__name__
        self.log.append(f"{self.name}.resp({what},{outcome.state})")
        if self.opt.get("raise_in") == "response":
            raise UpstreamReset(f"{self.name} failed")
        return not (outcome.response and outcome.response.head.status == self.opt.get("retry_on"))

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: CallNext
    ) -> UpstreamResponse:
        first = first_try(ctx)
        self.log.append(f"{self.name}.around(first={first.state if first else None})")
        response = first.result() if first is not None else await call_next(ctx, request)
        if response.head.status == self.opt.get("retry_on"):
            response = await call_next(ctx, request)
        self.log.append(f"{self.name}.around<{response.head.status}")
        return response


class Terminal:
    def __init__(self, log: list[str], *statuses: int) -> None:
        self.log, self.statuses = log, list(statuses)

    async def __call__(self, ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        status = self.statuses.pop(0)
        self.log.append(f"try({status})")
        return _response(status)


def _chain(log: list[str], **options: dict[str, Any]) -> Chain:
    """Layers a (outermost), b, c, each with its options."""
    return Chain([entry(Layer, (n, log, options.get(n, {})), name=n) for n in "abc"])


def _pass(chain: Chain, skipped: set[int] | None = None) -> LayerPass:
    """A pass over ``chain`` for a new stream; ``skipped``: layers that failed earlier in
    the stream (FailOpen) and are skipped for it."""
    run = chain.start(ctx())
    run._skipped = skipped
    return LayerPass(run, UpstreamRequest(head=run.ctx.request, body=BufferedBody()))


_ALL_CANCELLED = [
    "c.resp(CancelledError,state-c)",
    "b.resp(CancelledError,state-b)",
    "a.resp(CancelledError,state-a)",
]


async def test_success_path_is_plain_calls_outermost_first_then_innermost_first() -> None:
    log: list[str] = []
    response = await _pass(_chain(log)).call(Terminal(log, 200))
    assert response.head.status == 200
    assert log == [
        "a.req",
        "b.req",
        "c.req",
        "try(200)",
        "c.resp(200,state-c)",
        "b.resp(200,state-b)",
        "a.resp(200,state-a)",
    ]  # no around_upstream ran


async def test_a_refused_outcome_runs_that_layer_async_with_the_first_try() -> None:
    log: list[str] = []
    chain = _chain(log, a={"retry_on": 503})
    response = await _pass(chain).call(Terminal(log, 503, 200))
    assert response.head.status == 200
    assert log == [
        "a.req",
        "b.req",
        "c.req",
        "try(503)",
        "c.resp(503,state-c)",
        "b.resp(503,state-b)",
        "a.resp(503,state-a)",  # refused: a's around_upstream takes over with the first try
        "a.around(first=state-a)",
        "b.around(first=None)",  # the retry goes through the inner layers' around_upstream
        "c.around(first=None)",
        "try(200)",
        "c.around<200",
        "b.around<200",
        "a.around<200",
    ]


async def test_an_inner_refusal_leaves_the_outer_layers_with_its_result() -> None:
    log: list[str] = []
    chain = _chain(log, b={"retry_on": 503})
    response = await _pass(chain).call(Terminal(log, 503, 201))
    assert response.head.status == 201
    assert log[4:] == [
        "c.resp(503,state-c)",
        "b.resp(503,state-b)",
        "b.around(first=state-b)",
        "c.around(first=None)",
        "try(201)",
        "c.around<201",
        "b.around<201",
        "a.resp(201,state-a)",  # a is left with b's result, by its second half
    ]


async def test_run_async_runs_that_layer_and_the_inner_ones_as_around_upstream() -> None:
    log: list[str] = []
    chain = _chain(log, b={"run_async": True})
    response = await _pass(chain).call(Terminal(log, 200))
    assert response.head.status == 200
    assert log == [
        "a.req",
        "b.async?",
        "b.around(first=None)",
        "c.around(first=None)",
        "try(200)",
        "c.around<200",
        "b.around<200",
        "a.resp(200,state-a)",
    ]


async def test_a_first_half_that_raises_is_the_outcome_of_the_outer_layers() -> None:
    log: list[str] = []
    chain = _chain(log, b={"raise_in": "request"})
    with pytest.raises(UpstreamReset, match="b refused"):
        await _pass(chain).call(Terminal(log, 200))
    assert log == ["a.req", "b.req", "a.resp(UpstreamReset,state-a)"]  # no try


async def test_a_second_half_that_raises_is_the_outcome_of_the_outer_layers() -> None:
    log: list[str] = []
    chain = _chain(log, c={"raise_in": "response"})
    with pytest.raises(UpstreamReset, match="c failed"):
        await _pass(chain).call(Terminal(log, 200))
    assert log[3:] == [
        "try(200)",
        "c.resp(200,state-c)",
        "b.resp(UpstreamReset,state-b)",
        "a.resp(UpstreamReset,state-a)",
    ]


async def test_abandon_leaves_every_entered_layer_once_with_a_cancellation() -> None:
    log: list[str] = []
    lp = _pass(_chain(log))
    assert lp.enter()
    lp.abandon()
    lp.abandon()  # idempotent
    assert log[3:] == _ALL_CANCELLED


async def test_cancelled_try_abandons_the_entered_layers() -> None:
    log: list[str] = []

    async def hang(ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _pass(_chain(log)).call(hang)
    assert log[3:] == _ALL_CANCELLED


async def test_a_layer_skipped_for_the_stream_is_skipped_by_the_pass() -> None:
    log: list[str] = []
    lp = _pass(_chain(log), skipped={1})  # b failed earlier in this stream (FailOpen)
    assert (await lp.call(Terminal(log, 200))).head.status == 200
    assert [x for x in log if x.startswith("b")] == []
    assert log == ["a.req", "c.req", "try(200)", "c.resp(200,state-c)", "a.resp(200,state-a)"]


class OnlyAround:
    def __init__(self, config: None = None) -> None:
        pass

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: CallNext
    ) -> UpstreamResponse:
        return await call_next(ctx, request)


class AsyncPair(OnlyAround):
    async def on_upstream_request(self, ctx: StreamContext, request: UpstreamRequest) -> None:
        return None

    async def on_upstream_response(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: UpstreamOutcome
    ) -> bool:
        return True


def test_a_chain_runs_inline_only_when_every_layer_has_a_sync_pair() -> None:
    log: list[str] = []
    paired = entry(Layer, ("a", log, {}), name="a")
    assert Chain([]).inline and Chain([]).pairs == ()  # no layers: nothing to pair
    assert Chain([paired]).inline and Chain([paired]).pairs is not None
    for other in (OnlyAround, AsyncPair):
        chain = Chain([paired, entry(other, name="x")])
        assert chain.pairs is None and not chain.inline
