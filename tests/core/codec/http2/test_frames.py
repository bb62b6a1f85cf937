"""The HTTP/2 codec against hand-built frames, where the exact wire behaviour matters.

A raw peer encodes frames with hyperframe/hpack directly, so it can send what
no well-behaved codec would: invalid header blocks, padding, bombs, garbage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.core.codec import (
    H2_PREFACE,
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlUpdated,
    H2Codec,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from plait.core.codec.http2.native import NativeConnection
from plait.sdk import Headers, RequestHead, ResponseHead

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x1, 0x3, 0x6
REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x7, 0xB

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


class RawPeer:
    """Builds frames by hand; keeps one HPACK encoder so blocks stay decodable in sequence."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, end_stream: bool = False
    ) -> bytes:
        frame = HeadersFrame(stream_id, self.encoder.encode(fields), flags=["END_HEADERS"])
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    @staticmethod
    def data(stream_id: int, data: bytes, *, end_stream: bool = False, pad: int = 0) -> bytes:
        frame = DataFrame(stream_id, data, flags=["END_STREAM"] if end_stream else [])
        if pad:
            frame.flags.add("PADDED")
            frame.pad_length = pad
        return frame.serialize()


def parse(data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def server(
    *,
    max_header_list_size: int = 60 * 1024,
    initial_window_size: int = 1 << 20,
    connection_window_size: int = 4 << 20,
    max_concurrent_streams: int = 1000,
) -> H2Codec:
    """A server codec that has completed the handshake with a raw client."""
    codec = H2Codec(
        client_side=False,
        max_header_list_size=max_header_list_size,
        initial_window_size=initial_window_size,
        connection_window_size=connection_window_size,
        max_concurrent_streams=max_concurrent_streams,
    )
    codec.initiate()
    assert codec.receive_data(H2_PREFACE + SettingsFrame(0).serialize()) == []
    parse(codec.data_to_send())
    codec.receive_data(SettingsFrame(0, flags=["ACK"]).serialize())
    return codec


def client() -> tuple[H2Codec, int]:
    """A client codec with one open request (stream 1)."""
    codec = H2Codec(client_side=True)
    codec.initiate()
    assert codec.receive_data(SettingsFrame(0).serialize()) == []
    sid = codec.send_request(RequestHead(method="GET", path="/", authority="a"), end_stream=True)
    codec.data_to_send()
    return codec, sid


def credit_balanced(codec: H2Codec) -> bool:
    """Every flow-controlled octet received (data and padding) is either still in the
    connection's receive window or was handed back to it: none leaked."""
    conn: Any = codec._conn
    if isinstance(conn, NativeConnection):
        return bool(conn.recv.balanced)
    manager = conn._inbound_flow_control_window_manager
    return bool(manager.current_window_size + manager._bytes_processed == manager.max_window_size)


def goaways(data: bytes) -> list[GoAwayFrame]:
    return [f for f in parse(data) if isinstance(f, GoAwayFrame)]


def resets(data: bytes) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in parse(data) if isinstance(f, RstStreamFrame)]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_codec_warnings() -> Iterator[None]:
    """Fail if the codec had to fall back to its catch-all (a bug, not a peer error)."""
    handler = _Records()
    log = logging.getLogger("plait.core.codec")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


# -- connection errors -----------------------------------------------------------------


def test_http1_bytes_on_an_h2_connection() -> None:
    codec = H2Codec(client_side=False)
    codec.initiate()
    codec.data_to_send()
    with no_codec_warnings():
        events = codec.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events == [ConnectionTerminated(error_code=PROTOCOL_ERROR)]
    # RFC 9113 §3.4: the GOAWAY may be omitted, the peer does not speak HTTP/2.
    assert goaways(codec.data_to_send()) == []
    assert codec.receive_data(b"more") == []


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"\xff" * 40, FRAME_SIZE_ERROR),  # a 16 MiB frame: refused before its body arrives
        (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00", PROTOCOL_ERROR),  # DATA on stream 0
        (b"\x00\x00\x03\x04\x00\x00\x00\x00\x00abc", FRAME_SIZE_ERROR),  # SETTINGS of 3 bytes
    ],
)
def test_garbage_after_preface(garbage: bytes, code: int) -> None:
    codec = server()
    sid_request = RawPeer().headers(1, POST)
    assert isinstance(codec.receive_data(sid_request)[0], RequestReceived)
    with no_codec_warnings():
        events = codec.receive_data(garbage)
    assert events == [StreamReset(1, code, remote=False), ConnectionTerminated(error_code=code)]
    assert [g.error_code for g in goaways(codec.data_to_send())] == [code]
    assert codec.open_streams == 0


def test_hpack_bomb_is_a_connection_error() -> None:
    codec = server(max_header_list_size=1000)
    with no_codec_warnings():
        events = codec.receive_data(RawPeer().headers(1, [*GET, (b"x-bomb", b"v" * 5000)]))
    assert events == [ConnectionTerminated(error_code=ENHANCE_YOUR_CALM)]


def test_window_update_overflow() -> None:
    codec = server()
    overflow = WindowUpdateFrame(0, window_increment=2**31 - 1).serialize()
    events = codec.receive_data(overflow)
    assert events == [ConnectionTerminated(error_code=FLOW_CONTROL_ERROR)]


def test_push_promise_to_client_is_refused() -> None:
    codec, sid = client()
    push = PushPromiseFrame(sid, promised_stream_id=2, flags=["END_HEADERS"])
    push.data = Encoder().encode(GET)
    events = codec.receive_data(push.serialize())
    assert events == [
        StreamReset(sid, PROTOCOL_ERROR, remote=False),
        ConnectionTerminated(error_code=PROTOCOL_ERROR),
    ]


# -- stream errors: one bad request must not take down its neighbours -------------------


@pytest.mark.parametrize(
    "fields",
    [
        [*GET, (b"X-Upper", b"1")],  # upper-case name
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],  # no :path
        [*GET, (b":foo", b"bar")],  # unknown pseudo-header
        [(b":method", b"GET"), (b"accept", b"*/*"), (b":path", b"/"), (b":scheme", b"http")],
        [*GET, (b":method", b"POST")],  # duplicate pseudo-header
        [*GET, (b":status", b"200")],  # response pseudo-header in a request
        [*GET, (b"connection", b"close")],  # connection-specific
        [*GET, (b"te", b"gzip")],
        [*GET, (b"x-bad", b"a\r\nb")],  # CR/LF in a value
    ],
    ids=[
        "uppercase",
        "no-path",
        "unknown-pseudo",
        "pseudo-after-regular",
        "dup-pseudo",
        "status-in-request",
        "connection",
        "te-gzip",
        "crlf",
    ],
)
def test_malformed_request_resets_only_its_stream(fields: list[tuple[bytes, bytes]]) -> None:
    codec = server()
    peer = RawPeer()
    wire = (
        peer.headers(1, POST)
        + peer.headers(3, fields, end_stream=True)
        + peer.headers(5, GET, end_stream=True)
    )
    with no_codec_warnings():
        events = codec.receive_data(wire)
    assert [(type(e), e.stream_id) for e in events if isinstance(e, RequestReceived)] == [
        (RequestReceived, 1),
        (RequestReceived, 5),
    ]
    assert len(events) == 2
    out = codec.data_to_send()
    assert resets(out) == [(3, PROTOCOL_ERROR)]
    assert goaways(out) == []
    assert codec.open_streams == 2
    # The neighbours are unharmed.
    assert codec.receive_data(peer.data(1, b"body", end_stream=True)) == [
        DataReceived(1, b"body", True)
    ]


def test_stream_over_the_concurrency_limit_is_refused() -> None:
    """RFC 9113 §5.1.2: REFUSED_STREAM (safe to retry), not a connection error."""
    codec = server(max_concurrent_streams=2)
    peer = RawPeer()
    events = codec.receive_data(peer.headers(1, POST) + peer.headers(3, POST))
    assert [type(e) for e in events] == [RequestReceived, RequestReceived]
    with no_codec_warnings():
        events = codec.receive_data(peer.headers(5, POST) + peer.data(5, b"x" * 1000))
    assert events == []
    out = codec.data_to_send()
    assert resets(out)[0] == (5, REFUSED_STREAM)  # h2 answers the DATA with STREAM_CLOSED too
    assert goaways(out) == []
    assert credit_balanced(codec)
    # Once a stream closes there is room again.
    codec.receive_data(peer.data(1, b"", end_stream=True))
    codec.send_response(1, ResponseHead(status=200), end_stream=True)
    events = codec.receive_data(peer.headers(7, GET, end_stream=True))
    assert [(type(e), e.stream_id) for e in events if isinstance(e, RequestReceived)] == [
        (RequestReceived, 7)
    ]


def test_closed_streams_leave_h2_stream_table_at_once() -> None:
    """Pins the O(1) stream counting: closed streams are moved out of h2's table."""
    codec = server()
    peer = RawPeer()
    for sid in range(1, 41, 2):
        codec.receive_data(peer.headers(sid, GET, end_stream=True))
        codec.send_response(sid, ResponseHead(status=204), end_stream=True)
    codec.receive_data(peer.headers(41, POST))
    codec.receive_data(RstStreamFrame(41, error_code=8).serialize())
    assert codec._conn.streams == {}
    assert codec.open_streams == 0


def test_content_length_mismatch_resets_the_stream() -> None:
    codec = server()
    peer = RawPeer()
    events = codec.receive_data(peer.headers(1, [*POST, (b"content-length", b"5")]))
    assert isinstance(events[0], RequestReceived)
    with no_codec_warnings():
        events = codec.receive_data(peer.data(1, b"0123456789", end_stream=True))
    assert events == [StreamReset(1, PROTOCOL_ERROR, remote=False)]  # the 10 bytes never surface
    out = codec.data_to_send()
    assert resets(out) == [(1, PROTOCOL_ERROR)]
    assert goaways(out) == []
    assert codec.open_streams == 0
    assert credit_balanced(codec)


def test_malformed_trailers_reset_a_known_stream() -> None:
    codec = server()
    peer = RawPeer()
    codec.receive_data(peer.headers(1, POST))
    events = codec.receive_data(peer.headers(1, [(b":path", b"/x")], end_stream=True))
    assert events == [StreamReset(1, PROTOCOL_ERROR, remote=False)]
    assert goaways(codec.data_to_send()) == []


def test_trailers_without_end_stream_reset_the_stream() -> None:
    codec = server()
    peer = RawPeer()
    codec.receive_data(peer.headers(1, POST))
    events = codec.receive_data(peer.headers(1, [(b"x-trailer", b"1")], end_stream=False))
    assert events == [StreamReset(1, PROTOCOL_ERROR, remote=False)]


def test_client_side_malformed_response_resets_the_stream() -> None:
    codec, sid = client()
    peer = RawPeer()
    events = codec.receive_data(peer.headers(sid, [(b":status", b"200"), (b"X-Upper", b"1")]))
    assert events == [StreamReset(sid, PROTOCOL_ERROR, remote=False)]
    out = codec.data_to_send()
    assert resets(out) == [(sid, PROTOCOL_ERROR)]
    assert goaways(out) == []
    assert codec.can_open_stream


def test_trailers_only_response_from_raw_peer() -> None:
    codec, sid = client()
    fields = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"5")]
    events = codec.receive_data(RawPeer().headers(sid, fields, end_stream=True))
    assert len(events) == 1
    resp = events[0]
    assert isinstance(resp, ResponseReceived) and resp.end_stream
    assert resp.head.headers.get("grpc-status") == "5"
    assert codec.open_streams == 0


def test_response_then_trailers_from_raw_peer() -> None:
    codec, sid = client()
    peer = RawPeer()
    wire = (
        peer.headers(sid, [(b":status", b"200")])
        + peer.data(sid, b"abc")
        + peer.headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    )
    events = codec.receive_data(wire)
    assert [type(e) for e in events] == [ResponseReceived, DataReceived, TrailersReceived]
    assert events[-1] == TrailersReceived(sid, Headers([("grpc-status", "0")]))


# -- flow-control accounting ---------------------------------------------------------------


def test_padding_is_acknowledged_by_the_codec() -> None:
    codec = server(initial_window_size=65535, connection_window_size=65535)
    peer = RawPeer()
    codec.receive_data(peer.headers(1, POST))
    events: list[Event] = []
    for _ in range(3):
        events += codec.receive_data(peer.data(1, b"z" * 16000, pad=255))
    assert [len(e.data) for e in events if isinstance(e, DataReceived)] == [16000] * 3
    for e in events:
        assert isinstance(e, DataReceived)
        codec.acknowledge_received_data(1, len(e.data))
    # Every flow-controlled byte (data and padding) was handed back to h2's window manager.
    assert credit_balanced(codec)


def test_data_for_a_refused_stream_is_credited() -> None:
    """After our GOAWAY a new stream is refused; its DATA must not leak connection window."""
    codec = server(initial_window_size=65535, connection_window_size=65535)
    peer = RawPeer()
    codec.receive_data(peer.headers(1, GET, end_stream=True))
    codec.close()  # GOAWAY(last_stream_id=1)
    codec.data_to_send()
    events = codec.receive_data(peer.headers(3, POST) + peer.data(3, b"q" * 15000) * 2)
    assert events == []
    assert resets(codec.data_to_send()) == [(3, REFUSED_STREAM)]
    assert credit_balanced(codec)


def test_end_stream_goes_out_on_a_negative_window() -> None:
    """RFC 9113 §6.9.2: a SETTINGS change can make a window negative; END_STREAM still flows."""
    codec = server()
    peer = RawPeer()
    codec.receive_data(peer.headers(1, GET, end_stream=True))
    codec.send_response(1, ResponseHead(status=200), end_stream=False)
    codec.send_data(1, b"d" * 100, end_stream=False)
    codec.data_to_send()
    codec.receive_data(SettingsFrame(0, settings={0x4: 0}).serialize())  # window: 0 - 100
    codec.send_data(1, b"more", end_stream=False)
    assert codec.pending_bytes(1) == 4
    codec.send_data(1, b"", end_stream=True)  # queued behind "more"
    out = parse(codec.data_to_send())
    assert not any(isinstance(f, DataFrame) for f in out)
    events = codec.receive_data(WindowUpdateFrame(1, window_increment=104).serialize())
    assert events == [FlowControlUpdated(1)]
    data = [f for f in parse(codec.data_to_send()) if isinstance(f, DataFrame)]
    assert [(f.data, "END_STREAM" in f.flags) for f in data] == [(b"more", True)]
    assert codec.open_streams == 0


def test_end_stream_alone_on_a_negative_window() -> None:
    codec = server()
    peer = RawPeer()
    codec.receive_data(peer.headers(1, GET, end_stream=True))
    codec.send_response(1, ResponseHead(status=200), end_stream=False)
    codec.send_data(1, b"d" * 100, end_stream=False)
    codec.receive_data(SettingsFrame(0, settings={0x4: 0}).serialize())
    codec.data_to_send()
    codec.send_data(1, b"", end_stream=True)
    data = [f for f in parse(codec.data_to_send()) if isinstance(f, DataFrame)]
    assert [(f.data, "END_STREAM" in f.flags) for f in data] == [(b"", True)]
    assert codec.open_streams == 0


def test_rst_stream_from_peer() -> None:
    codec = server()
    peer = RawPeer()
    codec.receive_data(peer.headers(1, POST) + peer.data(1, b"abc"))
    events = codec.receive_data(RstStreamFrame(1, error_code=0x8).serialize())
    assert events == [StreamReset(1, 0x8, remote=True)]
    codec.acknowledge_received_data(1, 3)  # already credited by the reset: ignored
    assert credit_balanced(codec)


# -- fuzzing: whatever the peer sends, nothing escapes -------------------------------------


def _valid_client_stream() -> bytes:
    peer = RawPeer()
    return (
        peer.headers(1, [*POST, (b"te", b"trailers"), (b"content-type", b"application/grpc")])
        + peer.data(1, b"\x00\x00\x00\x00\x03abc")
        + peer.headers(1, [(b"x-t", b"1")], end_stream=True)
        + peer.headers(3, GET, end_stream=True)
        + WindowUpdateFrame(0, window_increment=1000).serialize()
        + RstStreamFrame(3, error_code=8).serialize()
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=200))
def test_fuzz_random_bytes_to_server(garbage: bytes) -> None:
    codec = server()
    with no_codec_warnings():
        events = codec.receive_data(garbage) if garbage else []
    assert all(isinstance(e, Event) for e in events)
    codec.data_to_send()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_valid_stream_to_server(data: st.DataObject) -> None:
    wire = bytearray(_valid_client_stream())
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    codec = server()
    cut = data.draw(st.integers(0, len(wire)))
    with no_codec_warnings():
        for chunk in (bytes(wire[:cut]), bytes(wire[cut:])):
            if chunk:
                codec.receive_data(chunk)
        codec.receive_data(b"")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=200))
def test_fuzz_random_bytes_to_client(garbage: bytes) -> None:
    codec, _ = client()
    with no_codec_warnings():
        if garbage:
            codec.receive_data(garbage)
    codec.data_to_send()
