"""plait.sdk.testing: the fake context, drive() and the conformance check."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from plait.filters import BUILTIN_FILTERS
from plait.plugins import load_filter_types
from plait.sdk import (
    Buffer,
    BufferedBody,
    Continue,
    FilterResult,
    FilterSpec,
    Headers,
    LocalReply,
    NoHealthyUpstream,
    PassThroughFilter,
    Pending,
    ResponseHead,
    StreamContext,
    TryAgain,
    TryOutcome,
    UpstreamConnectError,
    UpstreamRequest,
)
from plait.sdk.testing import (
    DriveResult,
    FilterContractError,
    TriesResult,
    check_filter,
    drive,
    drive_tries,
    make_context,
    make_request,
)


def _drive(f: object, **kw: Any) -> DriveResult:
    async def run() -> DriveResult:
        return await drive(f, **kw)

    return anyio.run(run)


class Recorder(PassThroughFilter):
    """Records every hook with its arguments; returns what ``script`` says."""

    def __init__(self, script: Mapping[str, list[FilterResult]] | None = None) -> None:
        self.seen: list[tuple[str, object, bool | None]] = []
        self.script = {k: list(v) for k, v in (script or {}).items()}

    def _next(self, hook: str) -> FilterResult:
        queue = self.script.get(hook)
        return queue.pop(0) if queue else None

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self.seen.append(("req_headers", len(headers), end_stream))
        return self._next("req_headers")

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        self.seen.append(("req_data", chunk, end_stream))
        return self._next("req_data")

    def on_request_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        self.seen.append(("req_trailers", len(trailers), None))
        return self._next("req_trailers")

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self.seen.append(("resp_headers", len(headers), end_stream))
        return self._next("resp_headers")

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        self.seen.append(("resp_data", chunk, end_stream))
        return self._next("resp_data")

    def on_response_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        self.seen.append(("resp_trailers", len(trailers), None))
        return self._next("resp_trailers")

    def on_stream_complete(self, ctx: StreamContext) -> None:
        self.seen.append(("complete", None, None))


def test_make_context_and_request() -> None:
    ctx = make_context()
    assert ctx.request.method == "GET" and ctx.request.path == "/"
    assert ctx.connection.peer_address[0] == "127.0.0.1" and ctx.cluster is None
    head = make_request("POST", "/a?b=1", [("X-A", "1")], authority="svc")
    ctx = make_context(head, cluster="c", stream_id=3)
    assert ctx.request is head and ctx.cluster == "c" and ctx.stream_id == 3
    assert head.headers.get("x-a") == "1" and head.path_only == "/a"


def test_hooks_run_in_contract_order() -> None:
    f = Recorder()
    res = _drive(
        f,
        request_head=make_request("POST", headers=[("a", "1")]),
        request_body=[b"ab", b"cd"],
        request_trailers=Headers([("t", "1")]),
        response_head=ResponseHead(status=201),
        response_body=b"ok",
    )
    assert f.seen == [
        ("req_headers", 1, False),
        ("req_data", b"ab", False),
        ("req_data", b"cd", False),  # trailers follow
        ("req_trailers", 1, None),
        ("resp_headers", 0, False),
        ("resp_data", b"ok", True),
        ("complete", None, None),
    ]
    assert res.status == 201 and res.upstream_called
    assert res.request_body == b"abcd" and res.response_body == b"ok"
    assert res.calls[0] == "on_request_headers" and res.calls[-1] == "on_stream_complete"


def test_end_stream_on_headers_when_there_is_no_body() -> None:
    f = Recorder()
    _drive(f, request_head=make_request())
    assert f.seen == [("req_headers", 0, True), ("resp_headers", 0, True), ("complete", None, None)]


def test_buffer_from_headers_delivers_the_whole_body_once() -> None:
    f = Recorder({"req_headers": [Buffer(limit=10)]})
    res = _drive(f, request_head=make_request("POST"), request_body=[b"a", b"b", b"c"])
    assert [s for s in f.seen if s[0] == "req_data"] == [("req_data", b"abc", True)]
    assert res.request_body == b"abc"


def test_buffer_from_data_recalls_with_the_whole_body() -> None:
    f = Recorder({"resp_data": [Buffer()]})
    _drive(f, request_head=make_request(), response_body=[b"x", b"y", b"z"])
    assert [s for s in f.seen if s[0] == "resp_data"] == [
        ("resp_data", b"x", False),
        ("resp_data", b"xyz", True),
    ]


@pytest.mark.parametrize(("phase", "status"), [("req", 413), ("resp", 500)])
def test_buffer_past_the_limit(phase: str, status: int) -> None:
    f = Recorder({f"{phase}_headers": [Buffer(limit=3)]})
    res = _drive(
        f,
        request_head=make_request("POST"),
        request_body=[b"ab", b"cd"],
        response_body=[b"ab", b"cd"],
    )
    assert res.status == status and res.local_reply is not None
    assert res.local_reply.reason == "body too large"
    assert f.seen[-1] == ("complete", None, None)


def test_local_reply_on_request_stops_before_upstream() -> None:
    f = Recorder({"req_data": [LocalReply(429, b"slow down")]})
    res = _drive(f, request_head=make_request("POST"), request_body=[b"a", b"b"])
    assert res.local_reply == LocalReply(429, b"slow down") and res.reply_phase == "request"
    assert not res.upstream_called and res.status == 429 and res.response_head is None
    assert [s[0] for s in f.seen] == ["req_headers", "req_data", "complete"]


def test_local_reply_on_response_replaces_it() -> None:
    f = Recorder({"resp_headers": [LocalReply(503)]})
    res = _drive(f, request_head=make_request(), response_body=b"never seen")
    assert res.upstream_called and res.reply_phase == "response" and res.status == 503
    assert [s[0] for s in f.seen] == ["req_headers", "resp_headers", "complete"]


def test_continue_with_data_rewrites_the_chunk() -> None:
    f = Recorder({"req_data": [Continue(data=b"A"), None]})
    res = _drive(f, request_head=make_request("POST"), request_body=[b"a", b"b"])
    assert res.request_body == b"Ab"


def test_async_hooks_are_awaited() -> None:
    class Async(PassThroughFilter):
        async def on_request_headers(
            self, ctx: StreamContext, headers: Headers, end_stream: bool
        ) -> FilterResult:
            await anyio.sleep(0)
            headers.set("x-async", "1")
            return None

    res = _drive(Async(), request_head=make_request())
    assert res.request_head.headers.get("x-async") == "1"


def test_stream_complete_runs_once_when_a_hook_raises() -> None:
    class Boom(Recorder):
        def on_response_headers(
            self, ctx: StreamContext, headers: Headers, end_stream: bool
        ) -> FilterResult:
            raise RuntimeError("boom")

    f = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        _drive(f, request_head=make_request())
    assert [s[0] for s in f.seen].count("complete") == 1


def test_a_filter_without_the_base_class_works() -> None:
    class Minimal:
        def __init__(self) -> None:
            self.done = 0

        def on_stream_complete(self, ctx: StreamContext) -> None:
            self.done += 1

    m = Minimal()
    res = _drive(m, request_head=make_request())
    assert m.done == 1 and res.calls == ["on_stream_complete"] and res.status == 200


@pytest.mark.parametrize(
    ("hook", "bad", "message"),
    [
        ("req_headers", 200, "expected None, Continue, Buffer or LocalReply"),
        ("req_trailers", Buffer(), "only headers and data hooks may"),
        ("resp_headers", Continue(data=b"x"), "only data hooks may"),
    ],
)
def test_invalid_results_break_the_contract(hook: str, bad: object, message: str) -> None:
    f = Recorder({hook: [bad]})  # type: ignore[list-item]
    with pytest.raises(FilterContractError, match=message):
        _drive(f, request_head=make_request(), request_trailers=Headers([("t", "1")]))
    assert f.seen[-1] == ("complete", None, None)


# -- check_filter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cfg:
    n: int = 0


def _spec(cls: type, *, independent: bool = False, parse: bool = True) -> FilterSpec[Any]:
    return FilterSpec(
        name="t",
        make=(lambda cfg: cls()) if parse else cls,  # a config-less filter: make()
        parse_config=(lambda raw: _Cfg(**raw)) if parse else None,
        stream_independent=independent,
    )


def test_check_filter_passes_every_builtin_and_the_third_party_filter() -> None:
    raw: dict[str, dict[str, Any]] = {
        "request-header-modifier": {"set": [{"name": "a", "value": "b"}]},
        "response-header-modifier": {"remove": ["server"]},
        "path-deny": {"paths": [{"value": "/admin"}]},
        "weighted-split": {"backends": [{"cluster": "a"}, {"cluster": "b", "weight": 2}]},
        "retry": {"attempts": 2, "codes": [503]},
        "circuit-breaker": {"clusters": {"a": {"maxConnections": 4}}},
        "load-balancer": {"clusters": {"a": {"type": "RoundRobin"}}},
        "fault": {"delay": {"fixedDelay": "1ms", "percentage": 50}, "abort": {"httpStatus": 503}},
        "authorization": {
            "policies": [
                {
                    "name": "shop/allow-web",
                    "action": "ALLOW",
                    "rules": [{"from": [{"principals": ["plait.local/ns/shop/*"]}]}],
                }
            ]
        },
    }
    for spec in BUILTIN_FILTERS:
        check_filter(spec, raw[spec.name])
    check_filter(load_filter_types()["example-stamp"], {"value": "x"})


def test_check_filter_rejects_a_misspelt_hook() -> None:
    class Typo(PassThroughFilter):
        def on_request_header(self, ctx: StreamContext, headers: Headers, end_stream: bool) -> None:
            pass

    with pytest.raises(FilterContractError, match="did you mean on_request_headers"):
        check_filter(_spec(Typo))


def test_check_filter_rejects_a_wrong_signature() -> None:
    class Wrong(PassThroughFilter):
        def on_request_data(self, ctx: StreamContext) -> None:  # type: ignore[override]
            pass

    with pytest.raises(FilterContractError, match="on_request_data has the wrong signature"):
        check_filter(_spec(Wrong))


def test_check_filter_rejects_a_sync_around_upstream() -> None:
    class Sync(PassThroughFilter):
        def around_upstream(  # type: ignore[override]
            self, ctx: StreamContext, request: object, call_next: Callable[..., Awaitable[Any]]
        ) -> None:
            pass

    with pytest.raises(FilterContractError, match="around_upstream must be async def"):
        check_filter(_spec(Sync))


class _Layer(PassThroughFilter):
    async def around_upstream(
        self, ctx: StreamContext, request: object, call_next: Callable[..., Awaitable[Any]]
    ) -> Any:
        return await call_next(ctx, request)


def test_check_filter_rejects_an_async_policy_hook() -> None:
    class Async(PassThroughFilter):
        async def before_try(self, ctx: StreamContext, request: object) -> None:
            return None

    with pytest.raises(FilterContractError, match="before_try must be a plain def"):
        check_filter(_spec(Async))


def test_check_filter_rejects_a_policy_mixed_with_around_upstream() -> None:
    class Both(_Layer):
        def after_try(self, ctx: StreamContext, request: object, outcome: object) -> None:
            return None

    with pytest.raises(FilterContractError, match="around_upstream replaces before_try/after_try"):
        check_filter(_spec(Both))


def test_check_filter_names_a_misspelt_policy_hook() -> None:
    class Typo(PassThroughFilter):
        def before_tries(self, ctx: StreamContext, request: object) -> None:
            return None

    with pytest.raises(FilterContractError, match="before_tries is not a filter hook"):
        check_filter(_spec(Typo))


def test_the_old_fast_pair_names_are_not_hooks() -> None:
    class Old(PassThroughFilter):
        def on_upstream_request(self, ctx: StreamContext, request: object) -> None:
            return None

    with pytest.raises(FilterContractError, match="on_upstream_request is not a filter hook"):
        check_filter(_spec(Old))


def test_check_filter_rejects_state_in_a_stream_independent_filter() -> None:
    class Counting(PassThroughFilter):
        def __init__(self) -> None:
            self.count = 0

        def on_request_headers(
            self, ctx: StreamContext, headers: Headers, end_stream: bool
        ) -> FilterResult:
            self.count += 1
            return None

    check_filter(_spec(Counting))  # fine when each stream gets its own instance
    with pytest.raises(FilterContractError, match="stream_independent"):
        check_filter(_spec(Counting, independent=True))


def test_check_filter_config_rules() -> None:
    with pytest.raises(FilterContractError, match="takes no config"):
        check_filter(_spec(PassThroughFilter, parse=False), {"a": 1})
    check_filter(_spec(PassThroughFilter, parse=False))
    with pytest.raises(TypeError):
        check_filter(_spec(PassThroughFilter), {"unknown": 1})
    with pytest.raises(FilterContractError, match="expected a FilterSpec"):
        check_filter(object())  # type: ignore[arg-type]


def test_testing_imports_nothing_of_plait_outside_the_sdk() -> None:
    spec = importlib.util.find_spec("plait.sdk.testing")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1 or not (node.module or "").startswith("plait"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("plait") for a in node.names)


def test_drive_awaits_a_pending_result_of_a_sync_hook() -> None:
    class Callout(PassThroughFilter):
        def on_request_headers(
            self, ctx: StreamContext, headers: Headers, end_stream: bool
        ) -> Pending[FilterResult]:
            async def ask() -> FilterResult:
                return LocalReply(403, reason="callout said no")

            return Pending(ask())

    res = _drive(Callout())
    assert res.status == 403 and not res.upstream_called


def _tries(layer: object, answers: list[Any], **kw: Any) -> TriesResult:
    async def run() -> TriesResult:
        ctx = make_context()
        request = UpstreamRequest(head=ctx.request, body=BufferedBody(b"payload"))
        return await drive_tries(layer, ctx, request, answers, **kw)

    return anyio.run(run)


class RetryOnce503(PassThroughFilter):
    """Tries again once on 503, on another endpoint, after 0.25 s."""

    def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> object:
        return request.body.whole

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
    ) -> TryAgain | None:
        response = outcome.response
        if response is not None and response.head.status == 503 and outcome.tries < 2:
            body = BufferedBody(outcome.state)
            again = UpstreamRequest(head=request.head, body=body, exclude=frozenset({"a"}))
            return TryAgain(again, after=0.25)
        return None


def test_drive_tries_follows_try_again_and_records_backoffs() -> None:
    res = _tries(RetryOnce503(), [503, 200])
    assert (res.tries, res.status, res.waits) == (2, 200, [0.25])
    assert res.requests[1].exclude == frozenset({"a"})
    assert res.requests[1].body.whole == b"payload"  # the replayed body
    gave_up = _tries(RetryOnce503(), [503, 503])
    assert (gave_up.tries, gave_up.status) == (2, 503)


def test_drive_tries_passes_errors_and_refusals_through() -> None:
    failed = _tries(RetryOnce503(), [UpstreamConnectError("refused")])
    assert failed.response is None and isinstance(failed.error, UpstreamConnectError)

    class Refuse(PassThroughFilter):
        def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> object:
            raise NoHealthyUpstream("breaker open")

    refused = _tries(Refuse(), [200])
    assert refused.tries == 0 and isinstance(refused.error, NoHealthyUpstream)


def test_drive_tries_refuses_a_layer_that_tries_past_the_script() -> None:
    with pytest.raises(AssertionError, match="asked for try 2; 1 scripted"):
        _tries(RetryOnce503(), [503])
