"""Playbook tests of the HTTP/2 codec: a client codec and a server codec wired in memory."""

from __future__ import annotations

from typing import Any

import pytest
from hpack import NeverIndexedHeaderTuple

from plait.core.codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlUpdated,
    H2Codec,
    InformationalReceived,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    is_h2_preface,
)
from plait.sdk import Headers, RequestHead, ResponseHead

PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x1, 0x2, 0x7, 0x8


class Pair:
    """A client and a server codec; :meth:`pump` shuttles bytes until both are quiet."""

    def __init__(self, client: dict[str, Any] | None = None, server: dict[str, Any] | None = None):
        self.client = H2Codec(client_side=True, **(client or {}))
        self.server = H2Codec(client_side=False, **(server or {}))
        self.client.initiate()
        self.server.initiate()
        assert self.pump() == ([], [])

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Returns (events the client saw, events the server saw)."""
        client_events: list[Event] = []
        server_events: list[Event] = []
        for _ in range(1000):
            to_server = self.client.data_to_send()
            if to_server:
                server_events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                client_events += self.client.receive_data(to_client)
            if not to_server and not to_client:
                return client_events, server_events
        raise AssertionError("the codecs never went quiet")

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        end_stream: bool = True,
        headers: list[tuple[str, str]] | None = None,
        authority: str = "svc.test",
    ) -> int:
        head = RequestHead(
            method=method, path=path, authority=authority, headers=Headers(headers or [])
        )
        return self.client.send_request(head, end_stream=end_stream)


def response(status: int = 200, headers: list[tuple[str, str]] | None = None) -> ResponseHead:
    return ResponseHead(status=status, headers=Headers(headers or []))


def body_of(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


# -- preface sniffing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"PRI * HT", None),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", True),
        (b"GET / HTTP/1.1\r\n", False),
        (b"P", None),
        (b"PRI * HTTP/1.1\r\n", False),
        (b"POST", False),
    ],
)
def test_is_h2_preface(data: bytes, expected: bool | None) -> None:
    assert is_h2_preface(data) is expected


# -- request / response shapes ------------------------------------------------------


def test_simple_get() -> None:
    pair = Pair()
    sid = pair.request("GET", "/a/b?q=1", headers=[("Accept", "text/plain")])
    assert sid == 1
    _, server_events = pair.pump()
    assert len(server_events) == 1
    req = server_events[0]
    assert isinstance(req, RequestReceived)
    assert (req.stream_id, req.end_stream) == (1, True)
    head = req.head
    assert (head.method, head.path, head.authority, head.scheme) == (
        "GET",
        "/a/b?q=1",
        "svc.test",
        "http",
    )
    assert head.http_version == "2"
    assert head.headers.raw == [(b"accept", b"text/plain")]

    pair.server.send_response(
        sid, response(200, [("content-type", "text/plain")]), end_stream=False
    )
    pair.server.send_data(sid, b"hello", end_stream=True)
    client_events, _ = pair.pump()
    assert [type(e) for e in client_events] == [ResponseReceived, DataReceived]
    resp, data = client_events
    assert isinstance(resp, ResponseReceived) and isinstance(data, DataReceived)
    assert (resp.head.status, resp.end_stream) == (200, False)
    assert resp.head.headers.get("content-type") == "text/plain"
    assert (data.data, data.end_stream) == (b"hello", True)
    assert pair.server.open_streams == 0
    assert pair.client.open_streams == 0
    pair.client.acknowledge_received_data(sid, 5)


def test_request_with_body_and_headers_only_response() -> None:
    pair = Pair()
    sid = pair.request("POST", "/upload", end_stream=False, headers=[("content-type", "x/y")])
    pair.client.send_data(sid, b"part1-", end_stream=False)
    pair.client.send_data(sid, b"part2", end_stream=True)
    _, server_events = pair.pump()
    assert isinstance(server_events[0], RequestReceived)
    assert server_events[0].end_stream is False
    assert body_of(server_events, sid) == b"part1-part2"
    last = server_events[-1]
    assert isinstance(last, DataReceived) and last.end_stream
    pair.server.acknowledge_received_data(sid, 11)

    pair.server.send_response(sid, response(204), end_stream=True)
    client_events, _ = pair.pump()
    assert len(client_events) == 1
    resp = client_events[0]
    assert isinstance(resp, ResponseReceived) and resp.end_stream and resp.head.status == 204
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_trailers_both_ways() -> None:
    pair = Pair()
    sid = pair.request("POST", "/t", end_stream=False, headers=[("te", "trailers")])
    pair.client.send_data(sid, b"body", end_stream=False)
    pair.client.send_trailers(sid, Headers([("x-checksum", "abc")]))
    _, server_events = pair.pump()
    assert [type(e) for e in server_events] == [RequestReceived, DataReceived, TrailersReceived]
    trailers = server_events[-1]
    assert isinstance(trailers, TrailersReceived) and trailers.trailers.raw == [
        (b"x-checksum", b"abc")
    ]

    pair.server.send_response(sid, response(200), end_stream=False)
    pair.server.send_data(sid, b"answer", end_stream=False)
    pair.server.send_trailers(sid, Headers([("x-status", "done")]))
    client_events, _ = pair.pump()
    assert [type(e) for e in client_events] == [ResponseReceived, DataReceived, TrailersReceived]
    assert client_events[-1] == TrailersReceived(sid, Headers([("x-status", "done")]))
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_grpc_bidirectional_streaming() -> None:
    pair = Pair()
    grpc = [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "1S")]
    sid = pair.request("POST", "/pkg.Echo/Chat", end_stream=False, headers=grpc)
    pair.client.send_data(sid, b"\x00\x00\x00\x00\x02m1", end_stream=False)
    _, server_events = pair.pump()
    req = server_events[0]
    assert isinstance(req, RequestReceived)
    assert req.head.headers.get("te") == "trailers"
    assert req.head.headers.get("content-type") == "application/grpc"
    assert body_of(server_events, sid) == b"\x00\x00\x00\x00\x02m1"

    pair.server.send_response(
        sid, response(200, [("content-type", "application/grpc")]), end_stream=False
    )
    pair.server.send_data(sid, b"\x00\x00\x00\x00\x02r1", end_stream=False)
    client_events, _ = pair.pump()
    assert [type(e) for e in client_events] == [ResponseReceived, DataReceived]

    pair.client.send_data(sid, b"\x00\x00\x00\x00\x02m2", end_stream=True)
    _, server_events = pair.pump()
    assert server_events == [DataReceived(sid, b"\x00\x00\x00\x00\x02m2", True)]

    pair.server.send_data(sid, b"\x00\x00\x00\x00\x02r2", end_stream=False)
    pair.server.send_trailers(sid, Headers([("grpc-status", "0"), ("grpc-message", "")]))
    client_events, _ = pair.pump()
    assert client_events[0] == DataReceived(sid, b"\x00\x00\x00\x00\x02r2", False)
    trailers = client_events[1]
    assert isinstance(trailers, TrailersReceived) and trailers.trailers.get("grpc-status") == "0"


def test_trailers_only_response() -> None:
    """gRPC answers an error with one HEADERS frame carrying END_STREAM."""
    pair = Pair()
    sid = pair.request(
        "POST",
        "/pkg.Svc/Missing",
        end_stream=True,
        headers=[("content-type", "application/grpc"), ("te", "trailers")],
    )
    pair.pump()
    head = response(200, [("content-type", "application/grpc"), ("grpc-status", "12")])
    pair.server.send_response(sid, head, end_stream=True)
    client_events, _ = pair.pump()
    assert len(client_events) == 1
    resp = client_events[0]
    assert isinstance(resp, ResponseReceived) and resp.end_stream
    assert resp.head.headers.get("grpc-status") == "12"
    assert pair.client.open_streams == 0


def test_informational_then_final() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False, headers=[("expect", "100-continue")])
    _, server_events = pair.pump()
    req = server_events[0]
    assert isinstance(req, RequestReceived) and req.expect_continue
    pair.server.send_informational(sid, response(100))
    pair.server.send_informational(sid, response(103, [("link", "</a.css>; rel=preload")]))
    client_events, _ = pair.pump()
    assert [type(e) for e in client_events] == [InformationalReceived, InformationalReceived]
    first, second = client_events
    assert isinstance(first, InformationalReceived) and first.head.status == 100
    assert isinstance(second, InformationalReceived) and second.head.headers.get("link")
    pair.client.send_data(sid, b"x", end_stream=True)
    pair.server.send_response(sid, response(200), end_stream=True)
    client_events, _ = pair.pump()
    assert isinstance(client_events[0], ResponseReceived) and client_events[0].end_stream


def test_connection_specific_request_headers_are_stripped() -> None:
    """An HTTP/1.1 head translated as is must not make the peer fail the stream."""
    pair = Pair()
    h1_headers = [
        ("Host", "legacy.example:8080"),
        ("Connection", "keep-alive, X-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("TE", "trailers, deflate"),
        ("X-Hop", "1"),
        ("X-Kept", "2"),
    ]
    sid = pair.request("POST", "/h1", end_stream=False, headers=h1_headers, authority="")
    pair.client.send_data(sid, b"chunk", end_stream=True)
    _, server_events = pair.pump()
    req = server_events[0]
    assert isinstance(req, RequestReceived)
    assert req.head.authority == "legacy.example:8080"
    assert req.head.headers.raw == [(b"te", b"trailers"), (b"x-kept", b"2")]
    assert body_of(server_events, sid) == b"chunk"


def test_te_other_than_trailers_is_dropped() -> None:
    pair = Pair()
    pair.request(headers=[("te", "gzip")])
    _, server_events = pair.pump()
    req = server_events[0]
    assert isinstance(req, RequestReceived) and "te" not in req.head.headers


def test_connection_specific_response_headers_are_stripped() -> None:
    pair = Pair()
    sid = pair.request()
    pair.pump()
    h1 = [
        ("Connection", "close"),
        ("Transfer-Encoding", "chunked"),
        ("Keep-Alive", "x"),
        ("Content-Type", "text/html"),
    ]
    pair.server.send_response(sid, response(200, h1), end_stream=True)
    client_events, _ = pair.pump()
    resp = client_events[0]
    assert isinstance(resp, ResponseReceived)
    assert resp.head.headers.raw == [(b"content-type", b"text/html")]


def test_sensitive_headers_are_never_indexed() -> None:
    pair = Pair()
    pair.request(headers=[("authorization", "Bearer secret"), ("cookie", "a=1"), ("x-plain", "v")])
    _, server_events = pair.pump()
    req = server_events[0]
    assert isinstance(req, RequestReceived)
    kinds = {name: type(pair) for pair in req.head.headers.raw for name in [pair[0]]}
    assert kinds[b"authorization"] is NeverIndexedHeaderTuple
    assert kinds[b"cookie"] is NeverIndexedHeaderTuple
    assert kinds[b"x-plain"] is not NeverIndexedHeaderTuple


# -- concurrency and flow control ---------------------------------------------------


def test_200_streams_of_256k_each_way() -> None:
    """Every byte arrives, both directions, with acknowledgement as the consumer reads."""
    size, streams = 256 * 1024, 200
    pair = Pair()
    client, server = pair.client, pair.server
    payload = {sid: bytes([sid % 251]) * size for sid in range(1, 2 * streams, 2)}
    for sid, data in payload.items():
        assert pair.request("POST", f"/s{sid}", end_stream=False) == sid
        client.send_data(sid, data, end_stream=True)
    assert any(client.pending_bytes(sid) for sid in payload)  # windows are smaller than 50 MiB

    got_request: dict[int, list[bytes]] = {sid: [] for sid in payload}
    got_response: dict[int, list[bytes]] = {sid: [] for sid in payload}
    done = 0
    for _ in range(10_000):
        to_server = client.data_to_send()
        for ev in server.receive_data(to_server) if to_server else []:
            if isinstance(ev, RequestReceived):
                server.send_response(ev.stream_id, response(200), end_stream=False)
            elif isinstance(ev, DataReceived):
                got_request[ev.stream_id].append(ev.data)
                server.acknowledge_received_data(ev.stream_id, len(ev.data))
                server.send_data(ev.stream_id, ev.data, end_stream=ev.end_stream)  # echo
            else:
                assert isinstance(ev, FlowControlUpdated), ev
        to_client = server.data_to_send()
        for ev in client.receive_data(to_client) if to_client else []:
            if isinstance(ev, DataReceived):
                got_response[ev.stream_id].append(ev.data)
                client.acknowledge_received_data(ev.stream_id, len(ev.data))
                done += ev.end_stream
            else:
                assert isinstance(ev, ResponseReceived | FlowControlUpdated), ev
        if not to_server and not to_client:
            break
    assert done == streams, "deadlock: the codecs went quiet before every stream finished"
    for sid, data in payload.items():
        assert b"".join(got_request[sid]) == data
        assert b"".join(got_response[sid]) == data
        assert client.pending_bytes(sid) == server.pending_bytes(sid) == 0
    assert client.open_streams == server.open_streams == 0


def test_tiny_window_queues_and_flushes() -> None:
    pair = Pair(server={"initial_window_size": 100})
    client, server = pair.client, pair.server
    sid = pair.request("POST", "/", end_stream=False)
    client.send_data(sid, b"a" * 1000, end_stream=False)
    client.send_data(sid, b"b" * 50, end_stream=False)
    client.send_trailers(sid, Headers([("x-end", "1")]))
    assert client.pending_bytes(sid) == 950  # 100 went out at once
    _, server_events = pair.pump()
    assert body_of(server_events, sid) == b"a" * 100
    assert client.pending_bytes(sid) == 950  # nothing moves until the server acknowledges

    received = body_of(server_events, sid)
    pending_seen = [client.pending_bytes(sid)]
    for _ in range(100):
        server.acknowledge_received_data(sid, len(received))
        client_events, server_events = pair.pump()
        assert all(isinstance(e, FlowControlUpdated) and e.stream_id == sid for e in client_events)
        assert client_events, "a WINDOW_UPDATE must flush queued data"
        pending_seen.append(client.pending_bytes(sid))
        received = body_of(server_events, sid)
        if isinstance(server_events[-1], TrailersReceived):
            break
    assert pending_seen[-1] == 0
    assert pending_seen == sorted(pending_seen, reverse=True)
    assert len(pending_seen) >= 10  # it really went 100 bytes at a time


def test_reset_stream_returns_unacknowledged_connection_credit() -> None:
    """A reset stream's unread bytes must not shrink the connection window forever."""
    pair = Pair(server={"initial_window_size": 65535, "connection_window_size": 65535})
    first = pair.request("POST", "/1", end_stream=False)
    pair.client.send_data(first, b"x" * 60000, end_stream=False)
    _, server_events = pair.pump()
    assert len(body_of(server_events, first)) == 60000  # never acknowledged
    pair.client.reset_stream(first)
    second = pair.request("POST", "/2", end_stream=False)
    pair.client.send_data(second, b"y" * 60000, end_stream=True)
    _, server_events = pair.pump()
    assert StreamReset(first, CANCEL, remote=True) in server_events
    assert len(body_of(server_events, second)) == 60000
    assert pair.client.pending_bytes(second) == 0


def test_peer_max_concurrent_streams() -> None:
    pair = Pair(server={"max_concurrent_streams": 2})
    assert pair.client.can_open_stream
    first = pair.request(end_stream=True)
    pair.request(end_stream=True)
    assert not pair.client.can_open_stream
    with pytest.raises(RuntimeError):
        pair.request()
    pair.pump()
    pair.server.send_response(first, response(200), end_stream=True)
    pair.pump()
    assert pair.client.can_open_stream
    assert pair.client.open_streams == 1


# -- resets, GOAWAY, EOF --------------------------------------------------------------


def test_client_resets_stream() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False)
    pair.pump()
    pair.client.reset_stream(sid)
    assert pair.client.open_streams == 0
    _, server_events = pair.pump()
    assert server_events == [StreamReset(sid, CANCEL, remote=True)]
    assert pair.server.open_streams == 0
    # The server's handler may still try to answer: a no-op, not an exception.
    pair.server.send_response(sid, response(200), end_stream=False)
    pair.server.send_data(sid, b"late", end_stream=True)
    client_events, _ = pair.pump()
    assert client_events == []


def test_server_resets_stream() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False)
    pair.pump()
    pair.server.reset_stream(sid, REFUSED_STREAM)
    client_events, _ = pair.pump()
    assert client_events == [StreamReset(sid, REFUSED_STREAM, remote=True)]
    pair.client.send_data(sid, b"late", end_stream=True)  # no-op
    assert pair.client.open_streams == 0


def test_graceful_goaway_lets_open_streams_finish() -> None:
    pair = Pair()
    first = pair.request("POST", "/", end_stream=False)
    pair.pump()
    pair.server.close()  # GOAWAY(NO_ERROR, last_stream_id=1)
    second = pair.request()  # crosses the GOAWAY on the wire
    client_events, server_events = pair.pump()
    assert server_events == []  # stream 3 was refused, never surfaced
    assert StreamReset(second, REFUSED_STREAM, remote=True) in client_events
    assert client_events[-1] == ConnectionTerminated(error_code=0, last_stream_id=first)
    assert not pair.client.can_open_stream
    assert pair.client.open_streams == 1

    # Stream 1 completes in both directions after the GOAWAY.
    pair.client.send_data(first, b"late body", end_stream=True)
    _, server_events = pair.pump()
    assert server_events == [DataReceived(first, b"late body", True)]
    pair.server.send_response(first, response(200), end_stream=True)
    client_events, _ = pair.pump()
    assert isinstance(client_events[0], ResponseReceived)
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_goaway_with_error_resets_everything() -> None:
    pair = Pair()
    first = pair.request(end_stream=True)
    second = pair.request("POST", end_stream=False)
    pair.pump()
    pair.server.close(INTERNAL_ERROR)
    assert pair.server.receive_data(b"\x00") == []  # terminated: input ignored
    client_events, _ = pair.pump()
    assert client_events == [
        StreamReset(first, INTERNAL_ERROR, remote=True),
        StreamReset(second, INTERNAL_ERROR, remote=True),
        ConnectionTerminated(error_code=INTERNAL_ERROR, last_stream_id=second),
    ]
    assert pair.client.open_streams == 0
    assert not pair.client.can_open_stream


def test_client_goaway_stops_new_requests() -> None:
    pair = Pair()
    pair.client.close()
    assert not pair.client.can_open_stream
    _, server_events = pair.pump()
    assert server_events == [ConnectionTerminated(error_code=0, last_stream_id=0)]


def test_eof_resets_open_streams() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False)
    pair.pump()
    assert pair.server.receive_data(b"") == [
        StreamReset(sid, INTERNAL_ERROR, remote=True),
        ConnectionTerminated(),
    ]
    assert pair.server.open_streams == 0
    assert pair.server.receive_data(b"more") == []
    pair.server.send_data(sid, b"x", end_stream=True)  # no-op after EOF


# -- limits and misuse ------------------------------------------------------------------


def test_request_headers_too_large_get_431() -> None:
    pair = Pair(server={"max_header_list_size": 1000})
    sid = pair.request("POST", "/", end_stream=False, headers=[("x-big", "v" * 2000)])
    pair.client.send_data(sid, b"body", end_stream=False)
    client_events, server_events = pair.pump()
    assert server_events == []
    assert pair.server.open_streams == 0
    resp = client_events[0]
    assert isinstance(resp, ResponseReceived) and resp.head.status == 431 and resp.end_stream
    # The request was still open: RST_STREAM(NO_ERROR) tells the client to stop sending.
    assert client_events[1:] == [StreamReset(sid, 0, remote=True)]
    assert pair.client.open_streams == 0
    # The connection is fine.
    pair.request()
    _, server_events = pair.pump()
    assert isinstance(server_events[0], RequestReceived)


def test_response_headers_too_large_reset_the_stream() -> None:
    pair = Pair(client={"max_header_list_size": 1000})
    sid = pair.request()
    pair.pump()
    pair.server.send_response(sid, response(200, [("x-big", "v" * 2000)]), end_stream=True)
    client_events, server_events = pair.pump()
    assert client_events == [StreamReset(sid, PROTOCOL_ERROR, remote=False)]
    assert server_events == [] or server_events == [StreamReset(sid, PROTOCOL_ERROR, remote=True)]
    assert pair.client.open_streams == 0


def test_sending_after_end_of_stream_raises() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False)
    pair.client.send_data(sid, b"x", end_stream=True)
    with pytest.raises(RuntimeError):
        pair.client.send_data(sid, b"y", end_stream=False)
    with pytest.raises(RuntimeError):
        pair.client.send_trailers(sid, Headers([("a", "b")]))


def test_acknowledgements_are_clamped_and_idempotent() -> None:
    pair = Pair()
    sid = pair.request("POST", "/", end_stream=False)
    pair.client.send_data(sid, b"12345", end_stream=True)
    pair.pump()
    pair.server.acknowledge_received_data(sid, 10**9)  # more than received: clamped
    pair.server.acknowledge_received_data(sid, 5)  # nothing left: ignored
    pair.server.acknowledge_received_data(99, 5)  # unknown stream: ignored
    pair.server.send_response(sid, response(200), end_stream=True)
    pair.pump()
    assert pair.server.open_streams == 0
