"""Connection errors of RFC 9113 beyond single frames: each offending sequence, sent by a
raw client, ends the connection with GOAWAY carrying the right code, and the codec
reports ``ConnectionTerminated`` with it. Runs over both connections (conftest.py)."""

from __future__ import annotations

import pytest
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from plait.core.codec import H2_PREFACE, ConnectionTerminated, H2Codec
from plait.sdk import ResponseHead

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, COMPRESSION_ERROR = 0x1, 0x3, 0x5, 0x9
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


def headers(encoder: Encoder, sid: int, fields: list[tuple[bytes, bytes]], end: bool) -> bytes:
    flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
    return HeadersFrame(sid, encoder.encode(fields), flags=flags).serialize()


def offending(name: str) -> bytes:
    e = Encoder()
    if name == "DATA on an idle stream":
        return DataFrame(5, b"x").serialize()
    if name == "HEADERS on a stream the client may not open (even)":
        return headers(e, 2, GET, True)
    if name == "HEADERS on a lower stream id than one opened":
        return headers(e, 5, GET, True) + headers(e, 3, GET, True)
    if name == "DATA beyond the connection window":
        return headers(e, 1, POST, False) + DataFrame(1, b"x" * 16384).serialize() * 5
    if name == "WINDOW_UPDATE on an idle stream":
        return WindowUpdateFrame(9, window_increment=1).serialize()
    if name == "connection window over 2^31-1":
        return WindowUpdateFrame(0, window_increment=2**31 - 1).serialize()
    if name == "INITIAL_WINDOW_SIZE pushing a stream window over 2^31-1":
        return (
            headers(e, 1, POST, False)
            + WindowUpdateFrame(1, window_increment=2**31 - 65536).serialize()
            + SettingsFrame(0, settings={0x4: 65537}).serialize()
        )
    if name == "an undecodable header block":
        return HeadersFrame(1, b"\xff\xff\xff\xff\xff\xff", flags=["END_HEADERS"]).serialize()
    if name == "RST_STREAM on an idle stream":
        return RstStreamFrame(11, error_code=8).serialize()
    raise AssertionError(name)


CASES = {
    "DATA on an idle stream": PROTOCOL_ERROR,
    "HEADERS on a stream the client may not open (even)": PROTOCOL_ERROR,
    "HEADERS on a lower stream id than one opened": PROTOCOL_ERROR,
    "DATA beyond the connection window": FLOW_CONTROL_ERROR,
    "WINDOW_UPDATE on an idle stream": PROTOCOL_ERROR,
    "connection window over 2^31-1": FLOW_CONTROL_ERROR,
    "INITIAL_WINDOW_SIZE pushing a stream window over 2^31-1": FLOW_CONTROL_ERROR,
    "an undecodable header block": COMPRESSION_ERROR,
    "RST_STREAM on an idle stream": PROTOCOL_ERROR,
}


def server() -> H2Codec:
    codec = H2Codec(client_side=False, initial_window_size=65535, connection_window_size=65535)
    codec.initiate()
    codec.receive_data(H2_PREFACE + SettingsFrame(0).serialize())
    codec.data_to_send()
    return codec


def goaway_codes(data: bytes) -> list[int]:
    codes = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        view = view[9 + length :]
        if isinstance(frame, GoAwayFrame):
            codes.append(frame.error_code)
    return codes


@pytest.mark.parametrize("name", list(CASES))
def test_each_connection_error_is_answered_with_goaway(name: str) -> None:
    codec = server()
    events = codec.receive_data(offending(name))
    assert events[-1] == ConnectionTerminated(error_code=CASES[name])
    assert goaway_codes(codec.data_to_send()) == [CASES[name]]
    assert codec.open_streams == 0


def test_headers_on_a_stream_that_ended_is_stream_closed() -> None:
    """RFC 9113 §5.1: after END_STREAM both ways, HEADERS is STREAM_CLOSED."""
    codec = server()
    e = Encoder()
    codec.receive_data(headers(e, 1, GET, True))
    codec.send_response(1, ResponseHead(status=204), end_stream=True)
    codec.data_to_send()
    events = codec.receive_data(headers(e, 1, GET, True))
    assert events == [ConnectionTerminated(error_code=STREAM_CLOSED)]
    assert goaway_codes(codec.data_to_send()) == [STREAM_CLOSED]
