"""Property tests: random and mutated requests never break the HTTP/1.1 server codecs.

Valid requests (generated, and written by the stdlib ``http.client``) must
parse back exactly however they are split across reads. Mutated ones (bit
flips, inserted and deleted bytes, duplicated lines, random splits) must
never raise: every outcome is a sequence of well-formed request events,
optionally ended by one ``ProtocolFailed`` with a 4xx, 501 or 505 status.
"""

from __future__ import annotations

import http.client
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plait.core.codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ProtocolFailed,
    RequestReceived,
    StreamReset,
    TrailersReceived,
    TunnelData,
    h11ref,
    http1,
)
from plait.sdk import RequestHead

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'", min_size=1, max_size=12
)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).map(
    lambda v: v.replace(" ", "")
)
PATH = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~/?=&%", max_size=20).map(lambda p: "/" + p)
RESERVED = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
    "trailer",
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """One valid request and what it must parse to."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "QUERY"]))
    path = draw(PATH)
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=5))
    fields = [(n, v) for n, v in fields if n.lower() not in RESERVED]
    body = draw(st.binary(max_size=64))
    framing = draw(
        st.sampled_from(["length", "chunked"] if body else ["none", "length", "chunked"])
    )
    lines = [f"{method} {path} HTTP/1.1", "Host: svc.local"] + [f"{n}: {v}" for n, v in fields]
    wire_body = b""
    expect = [(n.lower().encode(), v.encode()) for n, v in fields]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        expect.append((b"content-length", str(len(body)).encode()))
        wire_body = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        wire_body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + wire_body
    return data, {"method": method, "path": path, "headers": expect, "body": body}


class _Sock:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data


@st.composite
def stdlib_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A request written by the stdlib client, with the same expectations."""
    method = draw(st.sampled_from(["GET", "POST", "PUT"]))
    path = draw(PATH)
    body = draw(st.binary(max_size=40)) if method != "GET" else None
    fields = {
        n: v
        for n, v in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=3))
        if n.lower() not in RESERVED | {"accept-encoding"}
    }
    conn = http.client.HTTPConnection("svc.local", 8080)
    sock = _Sock()
    conn.sock = sock
    conn.request(method, path, body=body, headers=fields)
    return sock.sent, {"method": method, "path": path, "body": body or b""}


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def feed(impl: ModuleType, chunks: list[bytes]) -> list[Event]:
    s = impl.H1ServerCodec(max_header_bytes=2048)
    events: list[Event] = []
    for chunk in chunks:
        events += s.receive_data(chunk)
    events += s.receive_data(b"")
    return events


def requests_of(events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in events:
        assert not isinstance(e, ProtocolFailed), e
        if isinstance(e, RequestReceived):
            out.append(
                {
                    "method": e.head.method,
                    "path": e.head.path,
                    "headers": e.head.headers.raw,
                    "body": e.body,
                }
            )
        elif isinstance(e, DataReceived):
            out[-1]["body"] += e.data
    return out


IMPLS = pytest.mark.parametrize("impl", [http1, h11ref], ids=["llhttp", "h11ref"])


@IMPLS
@FUZZ
@given(st.lists(requests(), min_size=1, max_size=3), st.lists(st.integers(0, 10_000), max_size=6))
def test_valid_requests_parse_exactly(
    impl: ModuleType, reqs: list[tuple[bytes, dict[str, Any]]], cuts: list[int]
) -> None:
    data = b"".join(r[0] for r in reqs)
    got = requests_of(feed(impl, pieces(data, cuts)))
    assert got == [r[1] for r in reqs]


@IMPLS
@FUZZ
@given(
    st.lists(stdlib_requests(), min_size=1, max_size=3),
    st.lists(st.integers(0, 10_000), max_size=4),
)
def test_stdlib_requests_parse(
    impl: ModuleType, reqs: list[tuple[bytes, dict[str, Any]]], cuts: list[int]
) -> None:
    data = b"".join(r[0] for r in reqs)
    got = requests_of(feed(impl, pieces(data, cuts)))
    assert [{k: g[k] for k in ("method", "path", "body")} for g in got] == [r[1] for r in reqs]


_INSERT = b' \t\r\n:;,="\x00\x7f\x80\xffaZ0/-'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = b"".join(r[0] for r in draw(st.lists(requests(), min_size=1, max_size=2)))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, len(buf)))
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            buf[i:i] = bytes([draw(st.sampled_from(_INSERT))])
        elif op == 2 and buf:
            del buf[min(i, len(buf) - 1)]
        elif op == 3:
            start, end = buf.rfind(b"\r\n", 0, i), buf.find(b"\r\n", i)
            if 0 <= start < end:
                buf[end:end] = buf[start:end]  # a duplicated header line
        else:
            buf[i:i] = draw(
                st.sampled_from(
                    [
                        b"Content-Length: 3\r\n",
                        b"Transfer-Encoding: chunked\r\n",
                        b"Host: x\r\n",
                        b"Connection: close\r\n",
                        b"Transfer-Encoding: gzip, chunked\r\n",
                    ]
                )
            )
    return bytes(buf)


def check_well_formed(events: list[Event]) -> None:
    """Stream ids count up from 1; each message ends once; a failure is final and 4xx/501/505."""
    open_sid, last_sid, ended = 0, 0, True
    for i, e in enumerate(events):
        if isinstance(e, RequestReceived):
            assert ended and e.stream_id == last_sid + 1, events
            last_sid = open_sid = e.stream_id
            ended = e.end_stream
        elif isinstance(e, DataReceived | TrailersReceived):
            assert not ended and e.stream_id == open_sid, events
            ended = isinstance(e, TrailersReceived) or e.end_stream
        elif isinstance(e, ProtocolFailed):
            assert 400 <= e.status_hint < 500 or e.status_hint in (501, 505), e
            assert i == len(events) - 1, events
        elif isinstance(e, StreamReset):
            assert e.remote and i == len(events) - 1, events
        else:
            assert isinstance(e, TunnelData | ConnectionTerminated), e


@IMPLS
@FUZZ
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=5))
def test_mutated_requests_never_raise(impl: ModuleType, data: bytes, cuts: list[int]) -> None:
    events = feed(impl, pieces(data, cuts))
    check_well_formed(events)
    last = events[-1] if events else None
    event(f"failed {last.status_hint}" if isinstance(last, ProtocolFailed) else type(last).__name__)


@IMPLS
@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(0, 10_000), max_size=3))
def test_random_bytes_never_raise(impl: ModuleType, data: bytes, cuts: list[int]) -> None:
    check_well_formed(feed(impl, pieces(b"GET / HTTP/1.1\r\nHost: a\r\n" + data, cuts)))
    check_well_formed(feed(impl, pieces(data, cuts)))


@IMPLS
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=160), st.sampled_from(["GET", "HEAD", "CONNECT"]))
def test_client_random_responses_never_raise(impl: ModuleType, data: bytes, method: str) -> None:
    c = impl.H1ClientCodec(max_header_bytes=1024)
    c.send_request(
        RequestHead(method=method, path="a:1" if method == "CONNECT" else "/", authority="a"),
        end_stream=True,
    )
    for body in (b"HTTP/1.1 200 OK\r\n" + data, b""):
        for e in c.receive_data(body):
            assert not isinstance(e, ProtocolFailed) or e.status_hint == 502
