"""Playbook tests for the HTTP/1.1 codecs: bytes in → exact events out, calls → exact bytes out.

Every test runs against both implementations (the llhttp fast path and the h11
reference), so the two are held to one contract; where their wire output may
differ only in field-name case or order (h11 title-cases the framing fields it
rewrites), the test compares the parsed form instead.
"""

from __future__ import annotations

import http.client
import io
from types import ModuleType
from typing import Any

import pytest

from plait.core.codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalReceived,
    ProtocolFailed,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    TunnelData,
    h11ref,
    http1,
)
from plait.sdk import Headers, RequestHead, ResponseHead


@pytest.fixture(params=[http1, h11ref], ids=["llhttp", "h11ref"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    mod: ModuleType = request.param
    return mod


def server(impl: ModuleType, **kw: Any) -> Any:
    return impl.H1ServerCodec(**kw)


def client(impl: ModuleType, **kw: Any) -> Any:
    return impl.H1ClientCodec(**kw)


def req(
    sid: int,
    method: str = "GET",
    path: str = "/",
    authority: str = "a",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    end_stream: bool = True,
    body: bytes = b"",
    version: str = "1.1",
    upgrade: bool = False,
    expect: bool = False,
) -> RequestReceived:
    head = RequestHead(
        method=method,
        path=path,
        authority=authority,
        headers=Headers.from_lowercase_pairs(headers or []),
        http_version=version,
    )
    return RequestReceived(sid, head, end_stream, body, upgrade, expect)


def resp_head(status: int, *fields: tuple[str, str], reason: str = "") -> ResponseHead:
    return ResponseHead(status=status, headers=Headers(fields), reason=reason)


def norm_wire(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """(start line, sorted lower-cased fields, rest) of one message head plus what follows."""
    head, _, rest = data.partition(b"\r\n\r\n")
    start, *lines = head.split(b"\r\n")
    fields = sorted((n.lower(), v) for n, _, v in (line.partition(b": ") for line in lines))
    return start, fields, rest


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"


# -- requests in ------------------------------------------------------------------------


def test_simple_get(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(GET) == [
        req(
            1,
            path="/a?b=1",
            authority="example.com",
            headers=[(b"user-agent", b"t"), (b"accept", b"*/*")],
        )
    ]
    assert s.keep_alive and not s.head_in_progress


def test_post_content_length_one_read_is_one_event(impl: ModuleType) -> None:
    s = server(impl)
    events = s.receive_data(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert events == [req(1, "POST", "/u", headers=[(b"content-length", b"5")], body=b"hello")]


def test_post_body_across_reads(impl: ModuleType) -> None:
    s = server(impl)
    head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    assert s.receive_data(head + b"he") == [
        req(1, "POST", "/u", headers=[(b"content-length", b"5")], end_stream=False),
        DataReceived(1, b"he", False),
    ]
    assert s.receive_data(b"llo") == [DataReceived(1, b"llo", True)]


def test_chunked_request_with_trailers(impl: ModuleType) -> None:
    s = server(impl)
    data = (
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\nHost: dropped\r\n\r\n"
    )
    assert s.receive_data(data) == [
        req(1, "POST", "/c", headers=[(b"te", b"trailers")], end_stream=False),
        DataReceived(1, b"hello world", False),
        TrailersReceived(1, Headers.from_lowercase_pairs([(b"x-checksum", b"42")])),
    ]


def test_chunked_request_without_trailers_one_read(impl: ModuleType) -> None:
    s = server(impl)
    data = b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert s.receive_data(data) == [req(1, "PUT", "/c", body=b"abc")]


def test_chunked_request_split_and_empty_end(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    ) == [req(1, "POST", end_stream=False), DataReceived(1, b"abc", False)]
    assert s.receive_data(b"0\r\n") == []
    assert s.receive_data(b"\r\n") == [DataReceived(1, b"", True)]


MALFORMED_CHUNKED = {
    "non-hex-size": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative-size": b"-5\r\nhello\r\n0\r\n\r\n",
    "17-digit-size": b"1" * 17 + b"\r\nhello\r\n0\r\n\r\n",
    "space-in-size": b"5 5\r\nhello\r\n0\r\n\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": b"5\r\nhelloXX0\r\n\r\n",
    "lf-only-lines": b"5\nhello\n0\n\n",
    "1mib-extension": b"5;ext=" + b"a" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", MALFORMED_CHUNKED.values(), ids=MALFORMED_CHUNKED.keys())
def test_malformed_chunked_body_fails_with_400_after_the_head(
    impl: ModuleType, body: bytes
) -> None:
    s = server(impl)
    events = s.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(body), 65536):  # as a socket delivers it
        events += s.receive_data(body[i : i + 65536])
    assert events[0] == req(1, "POST", "/x", end_stream=False)
    assert type(events[-1]) is ProtocolFailed and events[-1].status_hint == 400, events
    assert not s.keep_alive


def test_trailer_section_over_the_limit_fails_with_400(impl: ModuleType) -> None:
    s = server(impl)
    events = s.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b"0\r\n" + b"".join(b"x-t%d: %s\r\n" % (i, b"a" * 30) for i in range(2000)) + b"\r\n"
    for i in range(0, len(body), 65536):
        events += s.receive_data(body[i : i + 65536])
    assert type(events[-1]) is ProtocolFailed and events[-1].status_hint == 400, events[-1:]


def test_pipelined_requests(impl: ModuleType) -> None:
    s = server(impl)
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert s.receive_data(data) == [
        req(1, path="/1"),
        req(2, "POST", "/2", headers=[(b"content-length", b"2")], body=b"hi"),
        req(3, path="/3"),
    ]
    for n in (1, 2, 3):
        s.send_response(resp_head(200), end_stream=True, body=b"%d" % n)
    out = s.data_to_send()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert out.endswith(b"\r\n\r\n3")
    assert s.keep_alive


def test_hop_by_hop_fields_are_removed(impl: ModuleType) -> None:
    s = server(impl)
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\n"
        b"Proxy-Connection: x\r\nX-Hop: 1\r\nTE: gzip\r\nUpgrade: h2c\r\nX-End: 2\r\n\r\n"
    )
    assert s.receive_data(data) == [req(1, headers=[(b"x-end", b"2")])]


# -- connection management --------------------------------------------------------------


def test_connection_close_stops_parsing(impl: ModuleType) -> None:
    s = server(impl)
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert s.receive_data(data) == [req(1)]
    assert not s.keep_alive
    s.send_response(resp_head(200), end_stream=True, body=b"x")
    assert s.data_to_send() == b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
    assert not s.keep_alive


def test_request_asking_to_close_queued_behind_another(impl: ModuleType) -> None:
    """After the first response the connection goes on (``reusable``) to answer the queued
    request, though no other may follow that one (``keep_alive``)."""
    s = server(impl)
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert s.receive_data(data) == [req(1, path="/1"), req(2, path="/2")]
    s.send_response(resp_head(200), end_stream=True, body=b"1")
    assert b"connection: close" not in s.data_to_send()
    assert s.reusable and not s.keep_alive
    s.send_response(resp_head(200), end_stream=True, body=b"2")
    assert s.data_to_send().endswith(b"connection: close\r\n\r\n2")
    assert not s.reusable and not s.keep_alive


def test_requests_parsed_before_eof_are_answered(impl: ModuleType) -> None:
    """A client that pipelines and then half-closes still gets every answer: the codec
    stays reusable, and the event after the requests says the connection ended."""
    s = server(impl)
    data = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    assert s.receive_data(data) + s.receive_data(b"") == [
        req(1, path="/1"),
        req(2, path="/2"),
        ConnectionTerminated(),
    ]
    for n in (1, 2):
        s.send_response(resp_head(200), end_stream=True, body=b"%d" % n)
        assert s.reusable
    assert s.data_to_send().count(b"HTTP/1.1 200 OK") == 2


def test_request_parsed_before_a_malformed_one_is_answered(impl: ModuleType) -> None:
    s = server(impl)
    events = s.receive_data(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\x01\r\n\r\n")
    assert events[0] == req(1, path="/1") and type(events[1]) is ProtocolFailed
    s.send_response(resp_head(200), end_stream=True, body=b"1")
    assert s.reusable  # on to the failure event, answered with its 400


@pytest.mark.parametrize("rest", [b"", b"zz\r\n"], ids=["eof", "malformed"])
def test_request_whose_body_breaks_is_the_last(impl: ModuleType, rest: bytes) -> None:
    s = server(impl)
    s.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    events = s.receive_data(rest)
    assert type(events[-1]) in (StreamReset, ProtocolFailed), events
    s.send_response(resp_head(400), end_stream=True)
    assert not s.reusable


def test_http10_without_keep_alive_closes(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(b"GET / HTTP/1.0\r\n\r\n") == [req(1, authority="", version="1.0")]
    s.send_response(resp_head(200), end_stream=True, body=b"x")
    assert b"connection: close" in s.data_to_send().lower()
    assert not s.keep_alive


def test_http10_keep_alive(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == [
        req(1, authority="", version="1.0")
    ]
    s.send_response(resp_head(200), end_stream=True, body=b"x")
    start, fields, rest = norm_wire(s.data_to_send())
    assert (start, rest) == (b"HTTP/1.1 200 OK", b"x")
    assert fields == [(b"connection", b"keep-alive"), (b"content-length", b"1")]
    assert s.keep_alive
    assert s.receive_data(b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].stream_id == 2


def test_http10_streamed_response_is_close_delimited(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    s.send_response(resp_head(200), end_stream=False)
    s.send_data(b"abc", end_stream=False)
    s.send_data(b"", end_stream=True)
    _start, fields, rest = norm_wire(s.data_to_send())
    assert fields == [(b"connection", b"close")] and rest == b"abc"
    assert not s.keep_alive


def test_chunked_response_with_trailers(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    s.send_response(resp_head(200, ("content-type", "text/plain")), end_stream=False)
    s.send_data(b"hello", end_stream=False)
    s.send_data(b"", end_stream=False)  # no zero-size chunk: it would end the body
    s.send_trailers(Headers([("x-sum", "1")]))
    _start, fields, rest = norm_wire(s.data_to_send())
    assert fields == [(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")]
    assert rest == b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n"
    assert s.keep_alive


def test_response_framing_exact_bytes() -> None:
    s = http1.H1ServerCodec()
    s.receive_data(GET)
    head = resp_head(200, ("content-type", "text/plain"), ("transfer-encoding", "gzip"))
    s.send_response(head, end_stream=True, body=b"hi")
    assert s.data_to_send() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    )


def test_trailers_dropped_without_chunking(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    s.send_response(resp_head(200, ("content-length", "2")), end_stream=False, body=b"hi")
    s.send_trailers(Headers([("x-sum", "1")]))
    assert s.data_to_send().endswith(b"\r\n\r\nhi")


def test_content_length_is_trusted_and_enforced(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    s.send_response(resp_head(200, ("content-length", "3")), end_stream=False)
    with pytest.raises(ValueError):
        s.send_data(b"abcd", end_stream=False)
    s.send_data(b"ab", end_stream=False)
    with pytest.raises(ValueError):
        s.send_data(b"", end_stream=True)
    s.send_data(b"c", end_stream=True)
    assert s.data_to_send().endswith(b"\r\n\r\nabc")


def test_header_injection_is_refused(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    with pytest.raises(ValueError):
        s.send_response(resp_head(200, ("x", "a\r\nset-cookie: evil")), end_stream=True)


def test_response_without_request_closes(impl: ModuleType) -> None:
    s = server(impl)
    s.send_response(resp_head(408), end_stream=True, body=b"slow")
    start, fields, _rest = norm_wire(s.data_to_send())
    assert start == b"HTTP/1.1 408 Request Timeout"
    assert fields == [(b"connection", b"close"), (b"content-length", b"4")]
    assert not s.keep_alive


# -- HEAD, 204, 304, 1xx ----------------------------------------------------------------


def test_head_response_has_no_body(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    s.send_response(resp_head(200, ("content-length", "10")), end_stream=True, body=b"ignored")
    _start, fields, rest = norm_wire(s.data_to_send())
    assert fields == [(b"content-length", b"10")] and rest == b""
    assert s.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_204_304_have_no_body(impl: ModuleType, status: int) -> None:
    s = server(impl)
    s.receive_data(GET)
    s.send_response(resp_head(status), end_stream=False)
    s.send_data(b"dropped", end_stream=True)
    start, fields, rest = norm_wire(s.data_to_send())
    assert start.startswith(b"HTTP/1.1 %d" % status) and fields == [] and rest == b""
    assert s.keep_alive


def test_expect_continue(impl: ModuleType) -> None:
    s = server(impl)
    head = b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    assert s.receive_data(head) == [
        req(1, "PUT", "/f", headers=[(b"content-length", b"3")], end_stream=False, expect=True)
    ]
    s.send_informational(resp_head(100))
    assert s.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert s.receive_data(b"abc") == [DataReceived(1, b"abc", True)]


def test_early_final_response_prevents_reuse(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    s.send_response(resp_head(417), end_stream=True)
    assert not s.keep_alive and not s.reusable


def test_informational_dropped_for_http10(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    s.send_informational(resp_head(103, ("link", "</a>")))
    assert s.data_to_send() == b""


# -- Upgrade, CONNECT -------------------------------------------------------------------

WS = (
    b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: k\r\n\r\n"
)


def test_websocket_upgrade_server(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(WS + b"early") == [
        req(
            1,
            path="/chat",
            headers=[(b"sec-websocket-key", b"k"), (b"upgrade", b"websocket")],
            upgrade=True,
        )
    ]
    assert s.receive_data(b"-more") == []  # held until the response decides
    s.send_response(
        resp_head(101, ("upgrade", "websocket"), ("sec-websocket-accept", "x")), end_stream=False
    )
    start, fields, _rest = norm_wire(s.data_to_send())
    assert start == b"HTTP/1.1 101 Switching Protocols"
    assert fields == [
        (b"connection", b"upgrade"),
        (b"sec-websocket-accept", b"x"),
        (b"upgrade", b"websocket"),
    ]
    assert s.resume() == [TunnelData(b"early-more")]
    assert s.receive_data(b"frame") == [TunnelData(b"frame")]
    s.send_data(b"raw", end_stream=False)
    assert s.data_to_send() == b"raw"
    assert not s.keep_alive
    assert s.receive_data(b"") == [ConnectionTerminated()]


def test_refused_upgrade_continues_as_http(impl: ModuleType) -> None:
    s = server(impl)
    events = s.receive_data(WS + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(events) == 1 and events[0].upgrade
    s.send_response(resp_head(400), end_stream=True, body=b"no")
    assert s.resume() == [req(2, path="/next")]


def test_connect_server(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\nhello") == [
        req(1, "CONNECT", "db:5432", "db:5432", upgrade=True)
    ]
    s.send_response(resp_head(200), end_stream=False)
    assert s.data_to_send() == b"HTTP/1.1 200 OK\r\n\r\n"
    assert s.resume() == [TunnelData(b"hello")]
    assert s.receive_data(b"more") == [TunnelData(b"more")]


def test_websocket_upgrade_client(impl: ModuleType) -> None:
    c = client(impl)
    head = RequestHead(
        method="GET", path="/chat", authority="a", headers=Headers([("upgrade", "websocket")])
    )
    c.send_request(head, end_stream=False, upgrade=True)
    start, fields, rest = norm_wire(c.data_to_send())
    assert start == b"GET /chat HTTP/1.1"
    assert fields == [(b"connection", b"upgrade"), (b"host", b"a"), (b"upgrade", b"websocket")]
    assert rest == b""
    events = c.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
        b"Upgrade: websocket\r\n\r\nframe"
    )
    assert events == [
        ResponseReceived(
            1,
            ResponseHead(
                status=101,
                headers=Headers([("upgrade", "websocket")]),
                reason="Switching Protocols",
            ),
            False,
        ),
        TunnelData(b"frame"),
    ]
    assert c.receive_data(b"more") == [TunnelData(b"more")]
    c.send_data(b"up", end_stream=False)
    assert c.data_to_send() == b"up"
    assert not c.keep_alive and not c.idle


def test_client_refused_upgrade_is_plain_http(impl: ModuleType) -> None:
    c = client(impl)
    head = RequestHead(
        method="GET", path="/chat", authority="a", headers=Headers([("upgrade", "websocket")])
    )
    c.send_request(head, end_stream=True, upgrade=True)
    c.data_to_send()
    events = c.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    assert [type(e) for e in events] == [ResponseReceived] and events[0].body == b"no"
    assert c.idle and c.keep_alive


def test_connect_client(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(
        RequestHead(method="CONNECT", path="db:5432", authority="db:5432"), end_stream=False
    )
    assert c.data_to_send() == b"CONNECT db:5432 HTTP/1.1\r\nhost: db:5432\r\n\r\n"
    events = c.receive_data(b"HTTP/1.1 200 Connection Established\r\n\r\nbytes")
    assert [type(e) for e in events] == [ResponseReceived, TunnelData]
    assert events[1] == TunnelData(b"bytes")
    c.send_data(b"x", end_stream=False)
    assert c.data_to_send() == b"x"


# -- client side ------------------------------------------------------------------------


def test_client_request_framing(impl: ModuleType) -> None:
    c = client(impl)
    head = RequestHead(
        method="GET", path="/p?q", authority="svc:80", headers=Headers([("accept", "*/*")])
    )
    c.send_request(head, end_stream=True)
    assert c.data_to_send() == b"GET /p?q HTTP/1.1\r\nhost: svc:80\r\naccept: */*\r\n\r\n"
    assert not c.idle
    c2 = client(impl)
    c2.send_request(RequestHead(method="POST", path="/", authority="a"), end_stream=True)
    assert c2.data_to_send() == b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"


def test_client_request_line_follows_each_request(impl: ModuleType) -> None:
    """One connection's requests repeat and change their method, path and authority: each
    goes out with its own request and host lines, and a refused one changes nothing."""
    c = client(impl)
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    sent = [
        ("GET", "/a", "x"), ("GET", "/a", "x"), ("GET", "/b", "x"), ("POST", "/b", "x"),
        ("POST", "/b", "y"), ("GET", "/a", "x"),
    ]  # fmt: skip
    for method, path, authority in sent:
        c.send_request(RequestHead(method=method, path=path, authority=authority), end_stream=True)
        line = f"{method} {path} HTTP/1.1\r\nhost: {authority}\r\n".encode()
        assert c.data_to_send().startswith(line)
        assert c.receive_data(ok)[0].head.status == 200
    with pytest.raises(ValueError):
        c.send_request(RequestHead(method="GET", path="/a\r\nx: 1", authority="x"), end_stream=True)
    c.send_request(RequestHead(method="GET", path="/a", authority="x"), end_stream=True)
    assert c.data_to_send() == b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"


def test_client_streamed_request_is_chunked(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(
        RequestHead(method="POST", path="/", authority="a"), end_stream=False, body=b"ab"
    )
    c.send_data(b"cd", end_stream=False)
    c.send_trailers(Headers([("x-t", "1")]))
    assert c.data_to_send() == (
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n2\r\ncd\r\n0\r\nx-t: 1\r\n\r\n"
    )


def test_client_response_and_reuse(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    assert c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nServer: s\r\n\r\nabc") == [
        ResponseReceived(
            1,
            ResponseHead(
                status=200, headers=Headers([("server", "s"), ("content-length", "3")]), reason="OK"
            ),
            True,
            b"abc",
        )
    ]
    assert c.idle and c.keep_alive
    c.send_request(RequestHead(method="GET", path="/2", authority="a"), end_stream=True)
    events = c.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
    assert [type(e) for e in events] == [ResponseReceived, DataReceived]
    assert events[0].stream_id == 2 and not events[0].end_stream
    assert c.receive_data(b"0\r\nx: 1\r\n\r\n") == [
        TrailersReceived(2, Headers.from_lowercase_pairs([(b"x", b"1")]))
    ]


def test_client_head_response_has_no_body(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="HEAD", path="/", authority="a"), end_stream=True)
    events = c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert len(events) == 1 and events[0].end_stream and events[0].body == b""
    assert c.idle and c.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_client_204_304(impl: ModuleType, status: int) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    events = c.receive_data(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status)
    assert len(events) == 1 and events[0].end_stream
    assert c.idle


def test_client_informational_then_final(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    events = c.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert events == [
        InformationalReceived(1, ResponseHead(status=100, reason="Continue")),
        InformationalReceived(
            1, ResponseHead(status=103, headers=Headers([("link", "</s>")]), reason="Early Hints")
        ),
        ResponseReceived(
            1,
            ResponseHead(status=200, headers=Headers([("content-length", "0")]), reason="OK"),
            True,
        ),
    ]


def test_client_close_delimited_and_connection_close(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    assert [type(e) for e in c.receive_data(b"HTTP/1.0 200 OK\r\n\r\nsome")] == [
        ResponseReceived,
        DataReceived,
    ]
    assert c.receive_data(b"") == [DataReceived(1, b"", True)]
    assert not c.keep_alive and not c.idle
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    c.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not c.keep_alive


def test_client_eof_cases(impl: ModuleType) -> None:
    c = client(impl)
    assert c.receive_data(b"") == [ConnectionTerminated()]
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
    assert c.receive_data(b"") == [StreamReset(1, remote=True)]
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    assert c.receive_data(b"") == [StreamReset(1, remote=True)]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 700 Odd\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab",
    ],
)
def test_client_bad_responses_are_502(impl: ModuleType, data: bytes) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    events = c.receive_data(data)
    assert isinstance(events[-1], ProtocolFailed) and events[-1].status_hint == 502
    assert not c.keep_alive and c.receive_data(b"more") == []


def test_client_unsolicited_bytes(impl: ModuleType) -> None:
    c = client(impl)
    assert c.receive_data(b"HTTP/1.1 408 Request Timeout\r\n\r\n") == [
        ProtocolFailed(502, "unsolicited bytes from the server")
    ]


def test_client_refuses_misuse(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    with pytest.raises(RuntimeError):
        c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    c = client(impl)
    head = RequestHead(
        method="PUT", path="/", authority="a", headers=Headers([("content-length", "2")])
    )
    c.send_request(head, end_stream=False)
    with pytest.raises(ValueError):
        c.send_data(b"abc", end_stream=True)


# -- malformed input and smuggling ------------------------------------------------------

H = b"Host: a\r\n"
BAD_REQUESTS = [
    ("malformed request line", b"GET /\r\n\r\n", 400),
    ("double space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "CL and TE",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "TE and CL",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        400,
    ),
    (
        "two CLs",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
    ),
    (
        "identical CLs",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400,
    ),
    ("CL list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\n", 400),
    ("CL sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\n", 400),
    ("TE not chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (
        "TE chunked not last",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "TE chunked twice",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "TE unsupported coding",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (
        "bad chunk size",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "chunk size with space",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n",
        400,
    ),
    (
        "bad chunk extension",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2;a b\r\nab\r\n",
        400,
    ),
    (
        "chunk data overrun",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        400,
    ),
    (
        "chunk size overflow",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        400,
    ),
    (
        "framing field in trailers",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 1\r\n\r\n",
        400,
    ),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold tab", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"X : a\r\n\r\n", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + H + b"X\t: a\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("control char in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x1bb\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("bad name char", b"GET / HTTP/1.1\r\n" + H + b"X(: a\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ("HTTP/0.9 explicit", b"GET / HTTP/0.9\r\n\r\n", 505),
    ("HTTP/3", b"GET / HTTP/3\r\nHost: a\r\n\r\n", 400),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("unknown method", b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("lower-case method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("malformed method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("garbage line", b"GARBAGE\r\n\r\n", 400),
    ("unknown method, bad line", b"FOO /\r\n\r\n", 400),
    ("RTSP method", b"DESCRIBE / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("invalid Host", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("relative target", b"GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk for GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT origin-form", b"CONNECT /a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "CONNECT with content",
        b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "Upgrade with content",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 1\r\n\r\nx",
        400,
    ),
    (
        # HTTP/1.0 ignores the upgrade, but llhttp ends the message at the head: the
        # body would be read as the next request on a keep-alive connection.
        "HTTP/1.0 Upgrade with content",
        b"POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, upgrade\r\n"
        b"Upgrade: websocket\r\nContent-Length: 30\r\n\r\n"
        b"GET /smuggled HTTP/1.0\r\nHost: a\r\n\r\n",
        400,
    ),
    (
        "HTTP/1.0 Upgrade with chunked content",
        b"POST / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("userinfo", b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("scheme digit", b"GET h2p://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests(impl: ModuleType, data: bytes, status: int) -> None:
    s = server(impl)
    events = s.receive_data(data)
    # A body error comes after the head's event; nothing else may precede the failure.
    assert isinstance(events[-1], ProtocolFailed), events
    assert events[:-1] in ([], [events[0]]) and not (events[:-1] and events[0].end_stream)
    assert events[-1].status_hint == status
    assert not s.keep_alive
    assert s.receive_data(GET) == [] and s.receive_data(b"") == []


def test_error_after_good_pipelined_request(impl: ModuleType) -> None:
    s = server(impl)
    events = s.receive_data(GET + b"GET / HTTP/1.1\r\nX : y\r\n\r\n")
    assert isinstance(events[0], RequestReceived) and events[1] == ProtocolFailed(
        400, events[1].message
    )


def test_accepted_oddities(impl: ModuleType) -> None:
    """What RFC 9112 allows and both codecs accept."""
    s = server(impl)
    data = (
        b"\r\n\r\nGET http://a.example:8080/p HTTP/1.1\r\nHost: a.example:8080\r\n"
        b"X-Empty:\r\nX-Ows: \t v \t\r\nX-Obs-Text: caf\xe9\r\n\r\n"
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET / HTTP/1.0\r\n\r\n"
    )
    assert s.receive_data(data) == [
        req(
            1,
            path="/p",  # absolute-form: the request goes on in origin-form
            authority="a.example:8080",
            headers=[(b"x-empty", b""), (b"x-ows", b"v"), (b"x-obs-text", b"caf\xe9")],
        ),
        req(2, "OPTIONS", "*"),
        req(3, authority="", version="1.0"),
    ]


@pytest.mark.parametrize(
    ("line", "method", "path", "authority"),
    [
        (b"GET http://a.example:8080/x?y=1 HTTP/1.1", "GET", "/x?y=1", "a.example:8080"),
        (b"GET http://a.example HTTP/1.1", "GET", "/", "a.example"),
        (b"GET http://a.example?q=1 HTTP/1.1", "GET", "/?q=1", "a.example"),
        (b"OPTIONS http://a.example HTTP/1.1", "OPTIONS", "*", "a.example"),
        (b"OPTIONS http://a.example/o HTTP/1.1", "OPTIONS", "/o", "a.example"),
        (b"POST HTTPS://b.example/p HTTP/1.1", "POST", "/p", "b.example"),
    ],
)
def test_an_absolute_form_target_goes_on_in_origin_form(
    impl: ModuleType, line: bytes, method: str, path: str, authority: str
) -> None:
    """A client that takes the sidecar for its proxy sends absolute-form: the target's
    authority wins over Host (RFC 9112 §3.2.2), and the path is origin-form (or ``*``)."""
    data = line + b"\r\nHost: other.example\r\nContent-Length: 0\r\n\r\n"
    whole = server(impl).receive_data(data)
    s = server(impl)  # and byte by byte: the same event
    split = [ev for i in range(len(data)) for ev in s.receive_data(data[i : i + 1])]
    for events in (whole, split):
        assert len(events) == 1 and isinstance(events[0], RequestReceived), events
        head = events[0].head
        assert (head.method, head.path, head.authority) == (method, path, authority)


# -- 431 --------------------------------------------------------------------------------


def test_431_in_one_read(impl: ModuleType) -> None:
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 200 + b"\r\n\r\n"
    assert isinstance(server(impl, max_header_bytes=len(big)).receive_data(big)[0], RequestReceived)
    assert server(impl, max_header_bytes=len(big) - 1).receive_data(big) == [
        ProtocolFailed(431, "header section too large")
    ]


def test_431_across_reads(impl: ModuleType) -> None:
    s = server(impl, max_header_bytes=100)
    assert s.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n") == []
    assert s.head_in_progress
    for _ in range(3):
        assert s.receive_data(b"X-Pad: " + b"p" * 13 + b"\r\n") == []
    events = s.receive_data(b"X-Pad: " + b"p" * 13 + b"\r\n")
    assert events == [ProtocolFailed(431, "header section too large")]


def test_431_counts_each_pipelined_head_separately(impl: ModuleType) -> None:
    one = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 50 + b"\r\n\r\n"
    events = server(impl, max_header_bytes=len(one)).receive_data(one * 5)
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [1, 2, 3, 4, 5]


# -- EOF --------------------------------------------------------------------------------


def test_server_eof_cases(impl: ModuleType) -> None:
    s = server(impl)
    assert s.receive_data(b"") == [ConnectionTerminated()]
    s = server(impl)
    s.receive_data(GET)
    assert s.receive_data(b"") == [ConnectionTerminated()]
    s = server(impl)
    s.receive_data(GET + b"GET /b HT")
    assert s.head_in_progress
    assert s.receive_data(b"") == [StreamReset(2, remote=True)]
    s = server(impl)
    s.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
    assert s.receive_data(b"") == [StreamReset(1, remote=True)]
    assert not s.keep_alive


# -- byte by byte -----------------------------------------------------------------------


def merged(events: list[Event]) -> list[Any]:
    """Events modulo body chunking: the fast-path body and DataReceived pieces merged."""
    out: list[Any] = []
    for e in events:
        if isinstance(e, RequestReceived | ResponseReceived):
            body, e.body = e.body, b""
            end, e.end_stream = e.end_stream, False
            out.append(e)
            out.append(["data", e.stream_id, body])
            if end:
                out.append(("end", e.stream_id))
        elif isinstance(e, DataReceived):
            if out and isinstance(out[-1], list) and out[-1][1] == e.stream_id:
                out[-1][2] += e.data
            else:
                out.append(["data", e.stream_id, e.data])
            if e.end_stream:
                out.append(("end", e.stream_id))
        else:
            out.append(e)
    return [x for x in out if not (isinstance(x, list) and not x[2])]


STREAM = (
    b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'3;x="y"\r\nabc\r\n1\r\n\r\r\n0\r\nT: 1\r\n\r\n'
    b"PUT /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n" + GET
)


def test_byte_by_byte(impl: ModuleType) -> None:
    whole = server(impl).receive_data(STREAM)
    s = server(impl)
    pieces: list[Event] = []
    for i in range(len(STREAM)):
        pieces += s.receive_data(STREAM[i : i + 1])
    assert merged(pieces) == merged(whole)
    assert len([e for e in whole if isinstance(e, RequestReceived)]) == 3


def test_client_byte_by_byte(impl: ModuleType) -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nwxyz\r\n0\r\n\r\n"
    )
    whole_c = client(impl)
    whole_c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    whole = whole_c.receive_data(data)
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    pieces: list[Event] = []
    for i in range(len(data)):
        pieces += c.receive_data(data[i : i + 1])
    assert merged(pieces) == merged(whole) and c.idle


# -- real stdlib clients and servers ----------------------------------------------------


class _Sock:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data


def stdlib_request(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("svc.local", 8080)
    sock = _Sock()
    conn.sock = sock
    conn.request(method, url, body=body, headers=headers)
    return sock.sent


def test_stdlib_client_requests(impl: ModuleType) -> None:
    s = server(impl)
    data = stdlib_request("GET", "/x?y=1", None, {"Accept": "text/html"})
    data += stdlib_request(
        "POST", "/form", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    events = s.receive_data(data)
    assert [(e.head.method, e.head.path, e.head.authority, e.body) for e in events] == [
        ("GET", "/x?y=1", "svc.local:8080", b""),
        ("POST", "/form", "svc.local:8080", b"a=1&b=2"),
    ]


def test_stdlib_client_reads_our_responses(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    s.send_response(resp_head(200, ("x-a", "1")), end_stream=False)
    s.send_data(b"part1-", end_stream=False)
    s.send_data(b"part2", end_stream=True)

    class _Src:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(self.data)

    resp = http.client.HTTPResponse(_Src(s.data_to_send()))  # type: ignore[arg-type]
    resp.begin()
    assert (resp.status, resp.getheader("x-a"), resp.read()) == (200, "1", b"part1-part2")


def test_body_overrunning_content_length_writes_nothing(impl: ModuleType) -> None:
    s = server(impl)
    s.receive_data(GET)
    with pytest.raises(ValueError):
        s.send_response(resp_head(200, ("content-length", "2")), end_stream=True, body=b"abc")
    assert s.data_to_send() == b""
    s.send_response(resp_head(200, ("content-length", "3")), end_stream=True, body=b"abc")
    assert s.data_to_send().endswith(b"\r\n\r\nabc")
    c = client(impl)
    head = RequestHead(method="PUT", path="/", authority="a")
    head.headers.set("content-length", "1")
    with pytest.raises(ValueError):
        c.send_request(head, end_stream=True)
    assert c.data_to_send() == b"" and c.idle


def test_client_keeps_end_to_end_fields_of_responses(impl: ModuleType) -> None:
    c = client(impl)
    c.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    events = c.receive_data(
        b"HTTP/1.1 200 OK\r\nHost: h\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: 1\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n"
    )
    kept = [(b"x-end", b"2"), (b"host", b"h"), (b"content-length", b"0")]
    assert events[0].head.headers.raw == kept


def test_unknown_method_verdict_waits_for_the_line(impl: ModuleType) -> None:
    """501 or 400 is decided on the whole request line, however the bytes arrive."""
    s = server(impl)
    assert s.receive_data(b"BA") == []
    assert s.head_in_progress
    assert s.receive_data(b"N /x HTTP/1.1") == []
    events = s.receive_data(b"\r\nHost: a\r\n\r\n")
    assert len(events) == 1 and events[0].status_hint == 501
    s = server(impl)
    s.receive_data(b"BAN /x")
    assert s.receive_data(b"") == [StreamReset(1, remote=True)]
