"""The access-log writer: one JSON line per request, batched, nothing lost to encoding."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from plait.core.access_log import AccessLog
from plait.sdk import ConnectionContext, Headers, RequestHead, ResponseHead, StreamContext


def _ctx(path: str, request_id: str, status: int = 200) -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 1))
    headers = Headers()
    headers.set("x-request-id", request_id)
    head = RequestHead(method="GET", path=path, authority="web", headers=headers)
    ctx = StreamContext(connection=conn, request=head)
    ctx.response = ResponseHead(status=status)
    return ctx


LRT: Any = SimpleNamespace(
    name="out",
    inbound=False,
    runtime=SimpleNamespace(identity=SimpleNamespace(leaf=None)),
    upstream_identity=lambda ctx: None,
)
EX: Any = SimpleNamespace(received=lambda: 3, bytes_out=1024, attempts=2)

pytestmark = pytest.mark.anyio


async def test_each_request_is_one_json_line_whatever_its_text(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    log.log(_ctx("/plain", "r1"), LRT, 0.0012, EX)
    log.log(_ctx("/caf\u00e9/\u2713", "r2"), LRT, 0.001, EX)  # non-ASCII, kept as text
    # a path a filter set to a string that is not valid UTF-8: still logged
    log.log(_ctx("/odd-\udcff", "r3"), LRT, 0.001, EX)
    assert not out.read_bytes()  # batched: nothing written before the flush
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [x["path"] for x in lines] == ["/plain", "/caf\u00e9/\u2713", "/odd-\udcff"]
    assert [x["request_id"] for x in lines] == ["r1", "r2", "r3"]
    first = lines[0]
    assert (first["status"], first["duration_ms"], first["retries"]) == (200, 1.2, 1)
    assert (first["bytes_received"], first["bytes_sent"]) == (3, 1024)


async def test_a_line_is_valid_json_whatever_the_request_holds(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    odd = ['/q"uote', "/back\\slash", "/new\nline", "/tab\tdel\x7f", "/nul\x00", "/\u00e9\u2713"]
    for i, path in enumerate(odd):
        ctx = _ctx(path, f'id"{i}\t\\')
        ctx.request.authority = f'h"o\\st{i}'
        ctx.request.headers.set("x-request-id", b"caf\xe9-" + str(i).encode())
        log.log(ctx, LRT, 0.0012, EX)
    log.close()
    lines = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    assert [x["path"] for x in lines] == odd
    assert [x["authority"] for x in lines] == [f'h"o\\st{i}' for i in range(len(odd))]
    assert [x["request_id"] for x in lines] == [f"caf\u00e9-{i}" for i in range(len(odd))]


async def test_each_line_names_the_peer_of_its_own_connection(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    conns = {
        (port, alpn): ConnectionContext(
            peer_address=("127.0.0.1", port), local_address=("127.0.0.1", 1), alpn=alpn
        )
        for port, alpn in ((40000, None), (40001, "h2"), (40002, "http/1.1"))
    }
    # a new connection each time, then two connections taking turns (as a client's do)
    order = [(40000, None), (40001, "h2"), (40000, None), (40001, "h2"), (40002, "http/1.1")]
    for i, key in enumerate(order):
        ctx = _ctx("/", "r")
        ctx.connection = conns[key] if i else ConnectionContext(
            peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 1)
        )  # fmt: skip
        log.log(ctx, LRT, 0.0000004, EX)
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [(x["peer"], x["alpn"]) for x in lines] == [
        (f"127.0.0.1:{port}", alpn) for port, alpn in order
    ]
    assert [x["duration_ms"] for x in lines] == [0.0] * len(order)
    assert all(x["trace_id"] is None and x["peer_identity"] is None for x in lines)


async def test_rejected_requests_and_late_lines_are_written_in_order(tmp_path: Path) -> None:
    """A refused request's line (made by orjson, non-ASCII listener name included) joins
    the batch with the others; a stream that ends after the close is appended at once."""
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    conn = ConnectionContext(peer_address=("127.0.0.1", 40002), local_address=("127.0.0.1", 1))
    log.log(_ctx("/first", "r1"), LRT, 0.001, EX)
    log.log_rejected("caf\u00e9", 431, "request headers too large", conn)
    log.log(_ctx("/bad\udcff", "r2", 502), LRT, 0.001, EX)
    assert not out.read_bytes()
    log.close()
    log.log(_ctx("/late", "r3", 0), LRT, 0.001, EX)
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [x.get("path") for x in lines] == ["/first", None, "/bad\udcff", "/late"]
    assert lines[1]["listener"] == "caf\u00e9" and lines[1]["status"] == 431
    assert lines[1]["peer"] == "127.0.0.1:40002"
    assert [x["status"] for x in lines] == [200, 431, 502, 0]


async def test_consecutive_requests_that_differ_in_one_field_each_say_their_own(
    tmp_path: Path,
) -> None:
    """The line's request part is kept while requests repeat it: each change of method,
    authority, path or version shows in its own line, and a retried or failed request
    says so after a plain one."""
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    steps = [("GET", "web", "/x", "1.1"), ("GET", "web", "/x", "1.1"), ("POST", "web", "/x", "1.1"),
             ("POST", "web", "/x", "2"), ("POST", "", "/x", "2"), ("POST", "", "/y", "2"),
             ("GET", "web", "/x", "1.1")]  # fmt: skip
    for i, (method, authority, path, version) in enumerate(steps):
        ctx = _ctx(path, f"r{i}")
        ctx.request.method, ctx.request.authority = method, authority
        ctx.request.http_version = version
        if i == 2:
            ctx.failure_reason = "upstream timeout"
        ex: Any = SimpleNamespace(received=lambda: 0, bytes_out=0, attempts=3 if i == 1 else 1)
        log.log(ctx, LRT, 0.001, ex)
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    got = [(x["method"], x["authority"], x["path"], x["protocol"]) for x in lines]
    assert got == [(m, a, p, f"HTTP/{v}") for m, a, p, v in steps]
    assert [x["retries"] for x in lines] == [0, 2, 0, 0, 0, 0, 0]
    assert [x["failure_reason"] for x in lines] == [None, None, "upstream timeout"] + [None] * 4


async def test_every_shape_of_line_says_what_its_request_had(tmp_path: Path) -> None:
    """The line is put together from parts (a table's or a kept one's) that depend on
    whether the request had a trace id and a request id, was retried or failed, and on
    numbers inside or past the tables: every combination parses to the request's facts."""
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    trace = b"4bf92f3577b34da6a3ce929d0e0e4736"
    cases = list(
        itertools.product(
            (None, trace),  # trace id
            (None, "r-1"),  # x-request-id
            ((1, None), (3, None), (1, "upstream timeout"), (2, "upstream reset")),
            (
                (200, 3, 1024, 0.0012),
                (1200, 5000, 999, 2.0005),
                (0, 0, 123456, 0.0),
                (404, 0, 7, 0.009999),
                (200, 1, 0, 0.010004),
            ),
        )
    )
    for trace_id, rid, (attempts, reason), (status, received, sent, seconds) in cases:
        ctx = _ctx("/p", "unused", status)
        if rid is None:
            ctx.request.headers.remove("x-request-id")
        else:
            ctx.request.headers.set("x-request-id", rid)
        ctx.failure_reason = reason
        ex: Any = SimpleNamespace(
            received=lambda n=received: n, bytes_out=sent, attempts=attempts, trace_id=trace_id
        )
        log.log(ctx, LRT, seconds, ex)
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(lines) == len(cases)
    for line, (trace_id, rid, (attempts, reason), (status, received, sent, seconds)) in zip(
        lines, cases, strict=True
    ):
        assert line["trace_id"] == (None if trace_id is None else trace_id.decode())
        assert line["request_id"] == rid
        assert (line["retries"], line["failure_reason"]) == (attempts - 1, reason)
        assert (line["status"], line["bytes_received"], line["bytes_sent"]) == (
            status, received, sent,
        )  # fmt: skip
        assert line["duration_ms"] == round(seconds * 1000, 3)
        assert line["path"] == "/p" and line["peer"] == "127.0.0.1:40000"
        assert list(line) == list(lines[0])  # every field, in the same order


async def test_a_callers_trace_headers_cannot_break_the_line(tmp_path: Path) -> None:
    """Without tracing the trace id is read from the request, as it came: only a valid
    W3C or B3 id reaches the line (it is written unescaped), anything else is null."""
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    good = "4bf92f3577b34da6a3ce929d0e0e4736"
    hostile = [
        [("traceparent", f"00-{good}-00f067aa0ba902b7-01")],
        [("traceparent", '00-4bf92f3577b34da6a3ce929d0e0e47"6-00f067aa0ba902b7-01')],
        [("traceparent", f'00-{good}-00f067aa0ba902b7-01-"}}\n')],  # version 00 is 55 long
        [("traceparent", "ff-" + good + "-00f067aa0ba902b7-01")],
        [("x-b3-traceid", '463ac35c9f6413a"'), ("x-b3-spanid", "a2fb4a1d1a96d312")],
        [("b3", f"{good[:16]}-a2fb4a1d1a96d312-1")],
        [("b3", 'x"\\-y-1')],
    ]
    for extra in hostile:
        ctx = _ctx("/t", "r")
        for name, value in extra:
            ctx.request.headers.set(name, value)
        log.log(ctx, LRT, 0.001, EX)
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [x["trace_id"] for x in lines] == [good, None, None, None, None, good[:16], None]
