"""plait's HPACK against the ``hpack`` package, the reference, on generated input.

* Header block sequences: a list of header lists is encoded block after block
  on one connection (one dynamic table each side), with table size changes
  between blocks; plait's encoder feeds ``hpack``'s decoder and ``hpack``'s
  encoder feeds plait's decoder, and every block must decode to the list sent.
* Arbitrary bytes: both decoders, each with a fresh or a primed dynamic table,
  must either return the same fields (and leave the same table) or both raise.
"""

from __future__ import annotations

import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.core.codec.hpack import Decoder, Encoder, HpackError
from plait.core.codec.hpack._huffman import decode as huffman_decode
from plait.core.codec.hpack._huffman import encode as huffman_encode

# Names and values drawn from a small pool repeat often enough to exercise the
# dynamic table (hits, name-only hits, eviction), with some arbitrary bytes.
NAMES = st.sampled_from(
    [b":path", b":authority", b"content-type", b"x-a", b"x-b", b"cookie", b"authorization",
     b"user-agent", b"grpc-timeout", b"set-cookie", b"accept-encoding"]
) | st.binary(min_size=1, max_size=20)  # fmt: skip
VALUES = st.sampled_from(
    [b"", b"1", b"gzip, deflate", b"application/grpc", b"v" * 100]
) | st.binary(max_size=60)
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=12)
SENSITIVE = st.lists(st.booleans(), max_size=12)
SIZES = st.none() | st.sampled_from([0, 64, 256, 4096]) | st.integers(0, 8192)
SLOW = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mark(fields: list[tuple[bytes, bytes]], secret: list[bool]) -> list[tuple[bytes, bytes]]:
    return [
        hpack.NeverIndexedHeaderTuple(*f) if i < len(secret) and secret[i] else f
        for i, f in enumerate(fields)
    ]


@SLOW
@given(st.lists(st.tuples(FIELDS, SENSITIVE, SIZES, st.booleans()), min_size=1, max_size=8))
def test_our_encoder_feeds_the_reference_decoder(
    blocks: list[tuple[list[tuple[bytes, bytes]], list[bool], int | None, bool]],
) -> None:
    enc, dec = Encoder(), hpack.Decoder()
    dec.max_header_list_size = 1 << 30
    for fields, secret, size, huffman in blocks:
        if size is not None:
            enc.header_table_size = size
            dec.max_allowed_table_size = size
        sent = _mark(fields, secret)
        got = dec.decode(enc.encode(sent, huffman=huffman), raw=True)
        assert got == fields
        for s, g in zip(sent, got, strict=True):
            if isinstance(s, hpack.NeverIndexedHeaderTuple):
                assert isinstance(g, hpack.NeverIndexedHeaderTuple)
        assert list(dec.header_table.dynamic_entries) == enc.table.entries[::-1]


@SLOW
@given(st.lists(st.tuples(FIELDS, SENSITIVE, SIZES, st.booleans()), min_size=1, max_size=8))
def test_the_reference_encoder_feeds_our_decoder(
    blocks: list[tuple[list[tuple[bytes, bytes]], list[bool], int | None, bool]],
) -> None:
    enc, dec = hpack.Encoder(), Decoder(max_header_list_size=1 << 30)
    ref = hpack.Decoder(max_header_list_size=1 << 30)
    for fields, secret, size, huffman in blocks:
        if size is not None:
            enc.header_table_size = size
            dec.max_allowed_table_size = size
            ref.max_allowed_table_size = size
        block = enc.encode(_mark(fields, secret), huffman=huffman)
        got = dec.decode(block)
        assert got == fields
        # (hpack's encoder indexes a never-indexed field already in its table: the
        # representation, not the request, decides.)
        assert [isinstance(g, hpack.NeverIndexedHeaderTuple) for g in got] == [
            isinstance(r, hpack.NeverIndexedHeaderTuple) for r in ref.decode(block, raw=True)
        ]
        assert list(reversed(dec.table.entries)) == list(enc.header_table.dynamic_entries)


def _both(ours: Decoder, ref: hpack.Decoder, block: bytes) -> None:
    try:
        expected = ref.decode(block, raw=True)
    except hpack.HPACKDecodingError:
        expected = None
    try:
        got = ours.decode(block)
    except HpackError:
        got = None
    assert got == expected
    if expected is not None:
        assert list(reversed(ours.table.entries)) == list(ref.header_table.dynamic_entries)
        assert ours.header_table_size == ref.header_table_size


# Blocks built from representation-shaped pieces reach deeper than random bytes.
PIECES = st.sampled_from(
    [b"\x82", b"\x84", b"\xbe", b"\xc0", b"\xff\x80\x01", b"\x80", b"\x3f\xe1\x1f", b"\x20",
     b"\x3f\x21", b"\x40\x01a\x01b", b"\x41\x81\x1f", b"\x10\x01k\x01v", b"\x0f\x2b\x00",
     b"\x40\x84\xff\xff\xff\xff\x00", b"\x00\x81\x00\x00", b"\x44\x02/x", b"\x7f\x00\x00"]
) | st.binary(max_size=6)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.lists(PIECES, max_size=8).map(b"".join), min_size=1, max_size=4), st.booleans())
def test_both_decoders_agree_on_any_bytes(blocks: list[bytes], primed: bool) -> None:
    ours, ref = Decoder(), hpack.Decoder()
    if primed:
        prime = hpack.Encoder().encode([(b"x-a", b"1"), (b"x-b", b"2"), (b":path", b"/p")])
        ours.decode(prime)
        ref.decode(prime, raw=True)
    for block in blocks:
        _both(ours, ref, block)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40))
def test_huffman_matches_the_reference(data: bytes) -> None:
    ref_encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    assert huffman_encode(data) == ref_encoder.encode(data)
    assert huffman_decode(huffman_encode(data)) == data
    try:
        expected: bytes | None = hpack.huffman_table.decode_huffman(data)
    except hpack.HPACKDecodingError:
        expected = None
    try:
        got: bytes | None = huffman_decode(data)
    except ValueError:
        got = None
    assert got == expected
