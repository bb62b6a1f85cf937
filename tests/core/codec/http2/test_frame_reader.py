"""plait's HTTP/2 frame reader: every per-frame rule of RFC 9113 with its error code,
refusal at the 9-octet header, and reading across arbitrary splits of the input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.codec.http2 import frames as fr
from plait.core.codec.http2.frame_reader import PREFACE, FrameReader, StreamFrameError
from plait.core.codec.http2.frames import Frame, FrameError


def raw(type_: int, flags: int, sid: int, body: bytes = b"") -> bytes:
    return len(body).to_bytes(3, "big") + bytes([type_, flags]) + sid.to_bytes(4, "big") + body


SETTINGS0 = fr.settings([])


def read_all(wire: bytes, **kwargs: int) -> list[Frame]:
    reader = FrameReader(expect_preface=False, **kwargs)
    reader.feed(SETTINGS0 + wire)
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    return out[1:]


HEADER_BLOCK = raw(0x1, 0x0, 1, b"abc")  # HEADERS without END_HEADERS on stream 1

# (wire, error code, stream of a stream error or 0 for a connection error)
CASES = {
    "DATA on stream 0": (raw(0x0, 0, 0, b"x"), fr.PROTOCOL_ERROR, 0),
    "DATA padding as long as the payload": (raw(0x0, 0x8, 1, b"\x03ab"), fr.PROTOCOL_ERROR, 0),
    "padded DATA without a pad length": (raw(0x0, 0x8, 1), fr.FRAME_SIZE_ERROR, 0),
    "HEADERS on stream 0": (raw(0x1, 0x4, 0, b"x"), fr.PROTOCOL_ERROR, 0),
    "HEADERS padding over the block": (raw(0x1, 0x2C, 1, b"\x01" + bytes(5)), fr.PROTOCOL_ERROR, 0),
    "HEADERS too short for its priority": (raw(0x1, 0x24, 1, b"\0\0"), fr.FRAME_SIZE_ERROR, 0),
    "HEADERS depending on itself": (
        raw(0x1, 0x24, 3, (3).to_bytes(4, "big") + b"\x10"),
        fr.PROTOCOL_ERROR,
        3,
    ),
    "PRIORITY on stream 0": (raw(0x2, 0, 0, bytes(5)), fr.PROTOCOL_ERROR, 0),
    "PRIORITY of 4 octets": (raw(0x2, 0, 5, bytes(4)), fr.FRAME_SIZE_ERROR, 5),
    "PRIORITY depending on itself": (
        raw(0x2, 0, 5, (5).to_bytes(4, "big") + b"\0"),
        fr.PROTOCOL_ERROR,
        5,
    ),
    "RST_STREAM on stream 0": (raw(0x3, 0, 0, bytes(4)), fr.PROTOCOL_ERROR, 0),
    "RST_STREAM of 5 octets": (raw(0x3, 0, 1, bytes(5)), fr.FRAME_SIZE_ERROR, 0),
    "SETTINGS on a stream": (raw(0x4, 0, 1), fr.PROTOCOL_ERROR, 0),
    "SETTINGS of 7 octets": (raw(0x4, 0, 0, bytes(7)), fr.FRAME_SIZE_ERROR, 0),
    "SETTINGS ACK with a payload": (raw(0x4, 0x1, 0, bytes(6)), fr.FRAME_SIZE_ERROR, 0),
    "SETTINGS_ENABLE_PUSH of 2": (fr.settings([(0x2, 2)]), fr.PROTOCOL_ERROR, 0),
    "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1": (
        fr.settings([(0x4, 2**31)]),
        fr.FLOW_CONTROL_ERROR,
        0,
    ),
    "SETTINGS_MAX_FRAME_SIZE under 16384": (fr.settings([(0x5, 16383)]), fr.PROTOCOL_ERROR, 0),
    "SETTINGS_MAX_FRAME_SIZE over 2^24-1": (fr.settings([(0x5, 2**24)]), fr.PROTOCOL_ERROR, 0),
    "SETTINGS_ENABLE_CONNECT_PROTOCOL of 2": (fr.settings([(0x8, 2)]), fr.PROTOCOL_ERROR, 0),
    "PUSH_PROMISE on stream 0": (raw(0x5, 0x4, 0, (2).to_bytes(4, "big")), fr.PROTOCOL_ERROR, 0),
    "PUSH_PROMISE of an odd stream": (
        raw(0x5, 0x4, 1, (3).to_bytes(4, "big")),
        fr.PROTOCOL_ERROR,
        0,
    ),
    "PUSH_PROMISE too short": (raw(0x5, 0x4, 1, b"\0\0"), fr.FRAME_SIZE_ERROR, 0),
    "PING on a stream": (raw(0x6, 0, 1, bytes(8)), fr.PROTOCOL_ERROR, 0),
    "PING of 7 octets": (raw(0x6, 0, 0, bytes(7)), fr.FRAME_SIZE_ERROR, 0),
    "GOAWAY on a stream": (raw(0x7, 0, 1, bytes(8)), fr.PROTOCOL_ERROR, 0),
    "GOAWAY of 7 octets": (raw(0x7, 0, 0, bytes(7)), fr.FRAME_SIZE_ERROR, 0),
    "WINDOW_UPDATE of 3 octets": (raw(0x8, 0, 1, bytes(3)), fr.FRAME_SIZE_ERROR, 0),
    "WINDOW_UPDATE of 0 on a stream": (raw(0x8, 0, 1, bytes(4)), fr.PROTOCOL_ERROR, 1),
    "WINDOW_UPDATE of 0 on the connection": (raw(0x8, 0, 0, bytes(4)), fr.PROTOCOL_ERROR, 0),
    "CONTINUATION without a header block": (raw(0x9, 0x4, 1, b"x"), fr.PROTOCOL_ERROR, 0),
    "CONTINUATION of another stream": (HEADER_BLOCK + raw(0x9, 0x4, 3), fr.PROTOCOL_ERROR, 0),
    "DATA inside a header block": (HEADER_BLOCK + raw(0x0, 0, 1, b"x"), fr.PROTOCOL_ERROR, 0),
    "unknown frame inside a header block": (HEADER_BLOCK + raw(0xEE, 0, 0), fr.PROTOCOL_ERROR, 0),
    "frame over SETTINGS_MAX_FRAME_SIZE": (raw(0x0, 0, 1, bytes(16385)), fr.FRAME_SIZE_ERROR, 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_has_its_error_code(name: str) -> None:
    wire, code, stream = CASES[name]
    with pytest.raises(FrameError) as info:
        read_all(wire)
    assert (info.value.code, info.value.stream_id) == (code, stream), str(info.value)


def test_a_stream_error_consumes_the_frame_and_reading_goes_on() -> None:
    bad = raw(0x8, 0, 1, bytes(4))  # WINDOW_UPDATE of 0 on stream 1: a stream error
    reader = FrameReader(expect_preface=False)
    reader.feed(SETTINGS0 + bad + fr.ping(b"12345678", False))
    assert reader.next_frame() is not None
    with pytest.raises(FrameError):
        reader.next_frame()
    ping = reader.next_frame()
    assert ping is not None and (ping.type, ping.data) == (fr.PING, b"12345678")


def test_headers_in_error_carry_their_block_for_the_hpack_decoder() -> None:
    wire = raw(0x1, 0x25, 3, (3).to_bytes(4, "big") + b"\x10" + b"block")
    with pytest.raises(StreamFrameError) as info:
        read_all(wire)
    assert info.value.frame.data == b"block"


def test_padding_may_fill_what_a_frame_leaves() -> None:
    """RFC 9113 §6.1, §6.2: padding is refused only when it exceeds the payload left."""
    data, headers = read_all(raw(0x0, 0x8, 1, b"\x02ab") + raw(0x1, 0xC, 3, b"\x01\x00"))
    assert (data.data, data.pad_length, headers.data, headers.pad_length) == (b"", 2, b"", 1)


def test_reserved_bits_are_ignored() -> None:
    (update,) = read_all(raw(0x8, 0, 0x80000003, (0x80000000 | 77).to_bytes(4, "big")))
    assert (update.stream_id, update.increment) == (3, 77)


def test_an_oversized_frame_is_refused_at_its_header() -> None:
    reader = FrameReader(expect_preface=False)
    reader.feed(SETTINGS0)
    assert reader.next_frame() is not None
    reader.feed((1 << 24 - 1).to_bytes(3, "big") + bytes([0, 0]) + (1).to_bytes(4, "big"))
    with pytest.raises(FrameError) as info:
        reader.next_frame()  # only the 9-octet header is in
    assert info.value.code == fr.FRAME_SIZE_ERROR


def test_an_unterminated_header_block_is_capped() -> None:
    wire = HEADER_BLOCK + raw(0x9, 0, 1, bytes(60)) + raw(0x9, 0, 1, bytes(60))
    with pytest.raises(FrameError) as info:
        read_all(wire, max_header_block=100)
    assert (info.value.code, info.value.reason) == (fr.ENHANCE_YOUR_CALM, "header_block")


def test_the_first_frame_must_be_settings() -> None:
    reader = FrameReader(expect_preface=True)
    reader.feed(PREFACE + fr.ping(bytes(8), False))
    with pytest.raises(FrameError) as info:
        reader.next_frame()
    assert info.value.code == fr.PROTOCOL_ERROR


def test_a_wrong_preface_is_refused_at_its_first_wrong_octet() -> None:
    reader = FrameReader(expect_preface=True)
    reader.feed(b"PRI * HTTP/2.0\r\n")
    assert reader.next_frame() is None
    reader.feed(b"\r\nXX")
    with pytest.raises(FrameError):
        reader.next_frame()


def test_unknown_frames_are_skipped_and_a_header_block_is_followed() -> None:
    block = fr.headers(1, bytes(range(40)), True, 16)
    frames = read_all(raw(0xEE, 0xFF, 7, b"whatever") + block + raw(0x0, 0x1, 1, b"x"))
    assert [f.type for f in frames] == [fr.HEADERS, fr.CONTINUATION, fr.CONTINUATION, fr.DATA]
    assert b"".join(f.data for f in frames[:3]) == bytes(range(40))
    assert [f.flags & fr.FLAG_END_HEADERS for f in frames[:3]] == [0, 0, fr.FLAG_END_HEADERS]
    assert frames[0].flags & fr.FLAG_END_STREAM


WIRE = (
    PREFACE
    + SETTINGS0
    + fr.headers(1, b"h" * 50, False, 20)
    + fr.data(1, b"d" * 30, True)
    + fr.window_update(0, 1000)
    + fr.goaway(1, 0, b"bye")
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(WIRE)), max_size=12))
def test_any_split_of_the_input_reads_the_same_frames(cuts: list[int]) -> None:
    reader = FrameReader(expect_preface=True)
    got = []
    bounds = [0, *sorted(cuts), len(WIRE)]
    for a, b in itertools.pairwise(bounds):
        reader.feed(WIRE[a:b])
        while (f := reader.next_frame()) is not None:
            got.append((f.type, f.flags, f.stream_id, f.data))
    assert [t for t, *_ in got] == [0x4, 0x1, 0x9, 0x9, 0x0, 0x8, 0x7]
    assert got[-1][3] == b"bye" and reader.buffered == 0
