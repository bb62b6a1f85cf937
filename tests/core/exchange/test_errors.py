"""How a failure becomes the answer: the deciding error of a group, gRPC replies."""

from __future__ import annotations

import anyio
import pytest

from plait.core.exchange.bodies import LocalReplyRaised
from plait.core.exchange.errors import grpc_reply, is_grpc, primary
from plait.sdk import (
    Headers,
    LocalReply,
    NoHealthyUpstream,
    RequestHead,
    UpstreamConnectError,
)


async def _group_of(*errors: BaseException) -> BaseException:
    """What an anyio task group raises when its tasks raise ``errors``."""

    async def fail(exc: BaseException) -> None:
        raise exc

    try:
        async with anyio.create_task_group() as tg:
            for exc in errors:
                tg.start_soon(fail, exc)
    except BaseException as exc:
        return exc
    raise AssertionError("the task group raised nothing")


@pytest.mark.anyio
async def test_primary_unwraps_a_task_group_error() -> None:
    err = UpstreamConnectError("refused")
    group = await _group_of(err)
    assert isinstance(group, BaseExceptionGroup)
    assert primary(group) is err


def test_primary_prefers_a_local_reply_then_a_plait_error() -> None:
    reply = LocalReplyRaised(LocalReply(403, reason="denied"))
    plait = NoHealthyUpstream("none")
    bug = ValueError("bug")
    nested = ExceptionGroup("outer", [bug, ExceptionGroup("inner", [plait, reply])])
    assert primary(nested) is reply
    assert primary(ExceptionGroup("g", [bug, plait])) is plait
    assert primary(ExceptionGroup("g", [bug])) is bug
    assert primary(bug) is bug


def _head(content_type: str | None) -> RequestHead:
    pairs = [(b"content-type", content_type.encode())] if content_type else []
    return RequestHead(method="POST", path="/s/M", authority="a",
                       headers=Headers.from_lowercase_pairs(pairs))  # fmt: skip


def test_is_grpc() -> None:
    assert is_grpc(_head("application/grpc"))
    assert is_grpc(_head("application/grpc+proto"))
    assert is_grpc(_head("application/GRPC-web"))
    assert not is_grpc(_head("application/json"))
    assert not is_grpc(_head(None))


@pytest.mark.parametrize(
    ("status", "grpc_status"),
    [(503, "14"), (429, "14"), (504, "4"), (408, "4"), (403, "7"), (401, "16"), (404, "12"),
     (500, "13"), (502, "14"), (400, "13"), (413, "13")],
)  # fmt: skip
def test_grpc_reply_is_trailers_only_with_the_status_a_client_expects(
    status: int, grpc_status: str
) -> None:
    out = grpc_reply(LocalReply(status, b"body\n", (("x-extra", "1"),), reason="why"))
    headers = dict(out.headers)
    assert out.status == 200 and out.body == b"" and out.reason == "why"
    assert headers["grpc-status"] == grpc_status
    assert headers["grpc-message"] == "why"
    assert headers["content-type"] == "application/grpc"
    assert headers["x-extra"] == "1"


def test_grpc_reply_keeps_a_grpc_reply_and_a_success() -> None:
    fault = LocalReply(200, headers=(("grpc-status", "8"),), reason="fault injected")
    assert grpc_reply(fault) is fault
    ok = LocalReply(204)
    assert grpc_reply(ok) is ok


def test_grpc_message_is_percent_encoded() -> None:
    out = grpc_reply(LocalReply(503, reason="100% für dich"))
    assert dict(out.headers)["grpc-message"] == "100%25 f%C3%BCr dich"
    out = grpc_reply(LocalReply(500, b"from the body\n"))
    assert dict(out.headers)["grpc-message"] == "from the body"
