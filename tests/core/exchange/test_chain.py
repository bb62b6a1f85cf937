"""The chain's walks: order, sync/async, results, containment, completion, buffering."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from plait.core.config import FilterEntry
from plait.core.exchange.actions import Steps, drive
from plait.core.exchange.bodies import BodyStage
from plait.core.exchange.chain import Chain, ChainRun
from plait.core.exchange.phase import PASS, PhaseOutcome, Suspended, settle
from plait.core.exchange.tries import tries
from plait.sdk import (
    Buffer,
    BufferedBody,
    ConnectionContext,
    Continue,
    FailStrategy,
    FilterResult,
    FilterSpec,
    Headers,
    LocalReply,
    PassThroughFilter,
    Pending,
    RequestHead,
    ResponseHead,
    StreamContext,
    UpstreamRequest,
    UpstreamResponse,
)

pytestmark = pytest.mark.anyio


def ctx() -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 1), local_address=("127.0.0.1", 2))
    return StreamContext(connection=conn, request=RequestHead(method="GET", path="/"))


class Recorder(PassThroughFilter):
    def __init__(self, config: tuple[str, list[str]]) -> None:
        self.name, self.log = config

    def on_request_headers(self, ctx: StreamContext, headers: Headers, end: bool) -> FilterResult:
        self.log.append(f"{self.name}.req")
        headers.add("x-order", self.name)
        return None

    async def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end: bool
    ) -> FilterResult:
        self.log.append(f"{self.name}.resp")
        return Continue()

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: Any
    ) -> UpstreamResponse:
        self.log.append(f"{self.name}.up>")
        resp: UpstreamResponse = await call_next(ctx, request)
        self.log.append(f"{self.name}.up<")
        return resp

    def on_stream_complete(self, ctx: StreamContext) -> None:
        self.log.append(f"{self.name}.done")


async def request_headers(run: ChainRun, headers: Headers) -> PhaseOutcome:
    return await settle(run.heads(run.chain.request_headers, headers, True))


def entry(
    make: Any,
    config: Any = None,
    name: str = "f",
    fail: FailStrategy = FailStrategy.FAIL_CLOSED,
    shared: bool = False,
) -> FilterEntry:
    spec: FilterSpec[Any] = FilterSpec(name=name, make=make, stream_independent=shared)
    return FilterEntry(name=name, spec=spec, config=config, fail_strategy=fail)


async def test_order_request_forward_response_reverse_layers_outermost_first() -> None:
    log: list[str] = []
    chain = Chain([entry(Recorder, ("a", log)), entry(Recorder, ("b", log))])
    run = chain.start(ctx())
    headers = Headers()
    assert (await request_headers(run, headers)).reply is None
    assert headers.get_all("x-order") == ["a", "b"]

    def terminal(r: UpstreamRequest) -> Steps:
        log.append("upstream")
        return UpstreamResponse(head=ResponseHead(status=200), body=BufferedBody())
        yield  # (a generator: the try is part of the machine)

    request = UpstreamRequest(head=run.ctx.request, body=BufferedBody())
    await drive(tries(run, request, terminal, drive, math.inf))
    await settle(run.heads(chain.response_headers, Headers(), True))
    run.complete()
    run.complete()  # idempotent: exactly once
    assert log == [
        "a.req",
        "b.req",
        "a.up>",
        "b.up>",
        "upstream",
        "b.up<",
        "a.up<",
        "b.resp",
        "a.resp",
        "a.done",
        "b.done",
    ]


class Deny(PassThroughFilter):
    def on_request_headers(self, ctx: StreamContext, headers: Headers, end: bool) -> FilterResult:
        return LocalReply(403, b"no", reason="denied")


async def test_local_reply_stops_the_chain() -> None:
    log: list[str] = []
    chain = Chain([entry(Deny), entry(Recorder, ("after", log))])
    out = await request_headers(chain.start(ctx()), Headers())
    assert out.reply == LocalReply(403, b"no", reason="denied")
    assert log == []


class Boom(PassThroughFilter):
    def on_request_headers(self, ctx: StreamContext, headers: Headers, end: bool) -> FilterResult:
        raise ValueError("boom")

    def on_stream_complete(self, ctx: StreamContext) -> None:
        raise ValueError("boom at the end")


async def test_fail_closed_contains_and_counts() -> None:
    failed: list[str] = []
    log: list[str] = []
    chain = Chain([entry(Boom, name="boom"), entry(Recorder, ("r", log))], on_failure=failed.append)
    run = chain.start(ctx())
    out = await request_headers(run, Headers())
    assert out.reply is not None and out.reply.status == 500
    assert out.reply.reason == "filter boom failed"
    run.complete()  # the raising completion hook does not stop the next one
    assert log == ["r.done"]
    assert failed == ["boom", "boom"]


async def test_fail_open_skips_the_filter_for_the_rest_of_the_stream() -> None:
    log: list[str] = []
    chain = Chain([entry(Boom, fail=FailStrategy.FAIL_OPEN), entry(Recorder, ("r", log))])
    run = chain.start(ctx())
    assert (await request_headers(run, Headers())).reply is None
    assert log == ["r.req"]


class BadResult(PassThroughFilter):
    def on_request_headers(self, ctx: StreamContext, headers: Headers, end: bool) -> FilterResult:
        return "yes"  # type: ignore[return-value]


async def test_a_hook_returning_garbage_is_a_filter_failure() -> None:
    out = await request_headers(Chain([entry(BadResult)]).start(ctx()), Headers())
    assert out.reply is not None and out.reply.status == 500


async def test_unimplemented_hooks_cost_nothing() -> None:
    chain = Chain([entry(PassThroughFilter)])
    assert chain.request_headers == () and chain.response_data == () and chain.layers == ()


class Upper(PassThroughFilter):
    def on_request_data(self, ctx: StreamContext, chunk: bytes, end: bool) -> FilterResult:
        return Continue(data=chunk.upper())


class WholeBody(PassThroughFilter):
    seen: list[tuple[bytes, bool]]

    def __init__(self, config: list[tuple[bytes, bool]]) -> None:
        self.seen = config

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end: bool) -> FilterResult:
        self.seen.append((chunk, end))
        return None if end else Buffer(limit=100)


async def test_buffer_in_a_data_hook_delivers_the_whole_body_once() -> None:
    seen: list[tuple[bytes, bool]] = []
    after: list[tuple[bytes, bool]] = []
    chain = Chain([entry(Upper), entry(WholeBody, seen), entry(WholeBody, after)])
    run = chain.start(ctx())
    stage = BodyStage(run, chain.request_data, chain.request_trailers)
    outs = [
        await stage.push(b"ab", False),
        await stage.push(b"cd", False),
        await stage.push(b"ef", True),
    ]
    assert [o.data for o in outs] == [b"", b"", b"ABCDEF"]
    assert seen == [(b"AB", False), (b"ABCDEF", True)]
    assert after == [(b"ABCDEF", True)]


async def test_buffer_past_its_limit_raises_body_too_large() -> None:
    from plait.sdk import BodyTooLarge

    chain = Chain([entry(WholeBody, [])])
    stage = BodyStage(chain.start(ctx()), chain.request_data, chain.request_trailers)
    await stage.push(b"x" * 60, False)
    with pytest.raises(BodyTooLarge):
        await stage.push(b"x" * 60, False)


class Counter(PassThroughFilter):
    made = 0

    def __init__(self) -> None:
        Counter.made += 1


async def test_stream_independent_filters_share_one_instance() -> None:
    Counter.made = 0
    chain = Chain([entry(Counter, shared=True)])
    for _ in range(5):
        chain.start(ctx())
    assert Counter.made == 1
    chain = Chain([entry(Counter)])
    Counter.made = 0
    for _ in range(5):
        chain.start(ctx())
    assert Counter.made == 5


class AsyncBoom(PassThroughFilter):
    async def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end: bool
    ) -> FilterResult:
        raise ValueError("boom, after an await")


async def test_an_async_hook_that_raises_is_contained_like_a_sync_one() -> None:
    failed: list[str] = []
    log: list[str] = []
    chain = Chain([entry(AsyncBoom, name="aboom"), entry(Recorder, ("r", log))], failed.append)
    out = await request_headers(chain.start(ctx()), Headers())
    assert out.reply is not None and out.reply.reason == "filter aboom failed"
    assert failed == ["aboom"] and log == []
    chain = Chain([entry(AsyncBoom, fail=FailStrategy.FAIL_OPEN), entry(Recorder, ("r", log))])
    assert (await request_headers(chain.start(ctx()), Headers())).reply is None
    assert log == ["r.req"]  # the walk resumed after the failed async hook


def test_a_filter_class_outside_the_contract_is_refused_when_the_chain_is_built() -> None:
    class Duck:  # has a hook's name, but does not subclass HttpFilter
        def on_request_headers(self, ctx: StreamContext, headers: Headers, end: bool) -> None:
            return None

    with pytest.raises(
        TypeError, match=r"filter duck: .*Duck does not subclass plait.sdk.HttpFilter"
    ):
        Chain([entry(Duck, name="duck")])


class CheckWhenAsked(PassThroughFilter):
    """Waits only for requests that carry ``x-check`` (a callout); passes others at once."""

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end: bool
    ) -> FilterResult | Pending[FilterResult]:
        if headers.get("x-check") is None:
            return None

        async def callout() -> FilterResult:
            await anyio.sleep(0)
            return LocalReply(403, reason="refused by the callout")

        return Pending(callout())


async def test_a_sync_hook_waits_through_pending_only_when_it_returns_one() -> None:
    log: list[str] = []
    chain = Chain([entry(CheckWhenAsked, name="check"), entry(Recorder, ("r", log))])
    quick = chain.start(ctx()).heads(chain.request_headers, Headers(), True)
    assert quick is PASS and log == ["r.req"]  # no wait: the walk ran through in the call

    run = chain.start(ctx())
    waits = run.heads(chain.request_headers, Headers([("x-check", "1")]), True)
    assert isinstance(waits, Suspended)  # the driver awaits it (in a task)
    out = await settle(waits)
    assert out.reply is not None and out.reply.status == 403
    assert log == ["r.req"]  # the reply stopped the walk before the next filter
