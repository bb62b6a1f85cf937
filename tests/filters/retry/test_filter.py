"""The retry layer over a scripted upstream: when it retries, where, and when it stops."""

from __future__ import annotations

import anyio
import pytest

from plait.filters.retry import RETRY, Retry, RetryBudgetExhausted, parse_retry
from plait.filters.retry import _filter as retry_module
from plait.sdk import MessageBody, UpstreamConnectError, UpstreamRequest, UpstreamReset
from plait.sdk.testing import check_filter
from tests.filters._upstream import Script, cluster, context, request, through


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_module, "_draw", lambda: 0.0)  # zero jitter: no real sleeps


def _run(
    retry: Retry, script: Script, method: str = "GET", body: bytes = b"", h2: bool = False
) -> int:
    ctx = context(script.upstream, method, h2)

    async def go() -> int:
        response = await through([retry], ctx, request(ctx, body), script)
        return response.head.status

    return anyio.run(go)


def test_conformance() -> None:
    check_filter(RETRY, {"attempts": 1})


def test_retries_a_listed_code_on_another_endpoint() -> None:
    upstream = cluster()
    script = Script(upstream, 503, 200)
    assert _run(Retry(parse_retry({"codes": [503]})), script) == 200
    assert script.endpoints == ["10.0.0.0:80", "10.0.0.1:80"]
    assert upstream.counters == {"retry": 1}


def test_gives_the_last_response_when_attempts_run_out() -> None:
    upstream = cluster()
    script = Script(upstream, 503)
    assert _run(Retry(parse_retry({"codes": [503], "attempts": 2})), script) == 503
    assert len(script.tries) == 3
    assert upstream.counters["retry_attempts_exhausted"] == 1


def test_unlisted_status_and_post_are_not_retried() -> None:
    script = Script(cluster(), 500)
    assert _run(Retry(parse_retry({"codes": [503]})), script) == 500
    assert len(script.tries) == 1
    post = Script(cluster(), 503)
    assert _run(Retry(parse_retry({"codes": [503]})), post, method="POST") == 503
    assert len(post.tries) == 1


def test_connect_failure_is_retried_even_for_post() -> None:
    script = Script(cluster(), UpstreamConnectError("refused"), 201)
    assert _run(Retry(parse_retry({})), script, method="POST", body=b"data") == 201
    assert script.bodies == [b"data", b"data"]  # the body was replayed


def test_gateway_error_and_grpc_conditions() -> None:
    retry = Retry(parse_retry({"retryOn": ["gateway-error", "unavailable"]}))
    assert _run(retry, Script(cluster(), 502, 200)) == 200
    assert _run(retry, Script(cluster(), (200, {"grpc-status": "14"}), 200), h2=True) == 200
    script = Script(cluster(), (200, {"grpc-status": "3"}))
    assert _run(retry, script, h2=True) == 200 and len(script.tries) == 1  # invalid-argument
    script = Script(cluster(), (200, {"grpc-status": "14"}))
    assert _run(retry, script) == 200 and len(script.tries) == 1  # HTTP/1.1: not gRPC


def test_body_over_the_cap_is_sent_once_and_not_failed() -> None:
    script = Script(cluster(), 503, 200)
    retry = Retry(parse_retry({"codes": [503], "maxReplayBytes": 4}))
    assert _run(retry, script, method="PUT", body=b"too long") == 503
    assert script.bodies == [b"too long"]
    assert script.upstream.counters["retry_not_replayable"] == 1


def test_streaming_body_is_replayed_from_its_copy() -> None:
    class Chunks(MessageBody):
        def __init__(self) -> None:
            self.parts = [b"a", b"b", b""]

        async def read(self) -> bytes:
            return self.parts.pop(0)

    script = Script(cluster(), UpstreamReset("reset"), 200)
    ctx = context(script.upstream, "PUT")

    async def go() -> int:
        req = UpstreamRequest(head=ctx.request, body=Chunks())
        return (await through([Retry(parse_retry({}))], ctx, req, script)).head.status

    assert anyio.run(go) == 200
    assert script.bodies == [b"ab", b"ab"]


def test_budget_exhausted_without_a_response_is_503() -> None:
    upstream = cluster()
    retry = Retry(
        parse_retry({"attempts": 1, "budgets": {upstream.name: {"percent": 0, "minRetryCount": 1}}})
    )
    with pytest.raises(UpstreamConnectError):  # its one retry came from the floor
        _run(retry, Script(upstream, UpstreamConnectError("refused")))
    assert upstream.counters["retry"] == 1
    with pytest.raises(RetryBudgetExhausted) as err:
        _run(retry, Script(upstream, UpstreamConnectError("refused")))
    assert err.value.reason == "retry budget exhausted" and err.value.status_hint == 503
    assert upstream.counters["retry_budget_exhausted"] >= 1


def test_retry_after_longer_than_the_deadline_is_not_waited_for() -> None:
    script = Script(cluster(), (503, {"retry-after": "5"}), 200)
    retry = Retry(parse_retry({"codes": [503]}))
    ctx = context(script.upstream)

    async def go() -> int:
        return (await through([retry], ctx, request(ctx), script, timeout=1)).head.status

    assert anyio.run(go) == 503
    assert script.upstream.counters["retry_after_too_long"] == 1
