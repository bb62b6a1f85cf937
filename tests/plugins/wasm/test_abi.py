"""The ABI's map serialization: what SDKs send is decoded, what the host sends round-trips,
and malformed input is a ``ValueError`` (the host call answers an error), never a crash."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.plugins.wasm._abi import decode_pairs, encode_pairs

_bytes = st.binary(max_size=40).filter(lambda b: b"\0" not in b)


@given(st.lists(st.tuples(_bytes, _bytes), max_size=20))
def test_pairs_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    assert decode_pairs(encode_pairs(pairs)) == pairs


@given(st.binary(max_size=200))
def test_garbage_is_a_value_error_or_pairs(raw: bytes) -> None:
    try:
        pairs = decode_pairs(raw)
    except ValueError:
        return
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in pairs)


def test_layout_is_the_specs() -> None:
    raw = encode_pairs([(b":path", b"/a"), (b"x", b"")])
    assert raw == struct.pack("<IIIII", 2, 5, 2, 1, 0) + b":path\0/a\0x\0\0"
    assert decode_pairs(b"") == decode_pairs(b"\0") == []


@pytest.mark.parametrize(
    "raw",
    [b"\x01\x00\x00", struct.pack("<I", 3) + b"\0" * 8, struct.pack("<III", 1, 10, 0) + b"ab\0\0"],
)
def test_truncated_maps_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_pairs(raw)


def test_an_empty_map_still_has_its_count() -> None:
    assert encode_pairs([]) == b"\0\0\0\0"
