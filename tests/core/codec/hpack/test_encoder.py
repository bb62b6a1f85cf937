"""What plait's encoder chooses: indexing that pays, never-indexing for secrets, size updates."""

from __future__ import annotations

import hpack
from hpack import NeverIndexedHeaderTuple

from plait.core.codec.hpack import Decoder, Encoder

GRPC_REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/pkg.Svc/Method"),
    (b":authority", b"backend.default.svc:50051"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"999m"),
    (b"user-agent", b"grpc-python/1.60.0 grpc-c/37.0.0 (linux; chttp2)"),
]


def test_a_repeated_request_shrinks_to_a_few_octets_and_beats_hpack() -> None:
    ours, ref = Encoder(), hpack.Encoder()
    first = ours.encode(GRPC_REQUEST)
    second = ours.encode(GRPC_REQUEST)
    # Everything but grpc-timeout (which changes per call) is one index octet; grpc-timeout
    # is its name's index (2 octets) and its value (1 + 3 octets).
    assert len(second) <= 7 + 2 + 4
    assert len(second) < len(first) / 5
    ref.encode(GRPC_REQUEST)
    assert len(second) <= len(ref.encode(GRPC_REQUEST)) + 2
    assert Decoder().decode(first) == GRPC_REQUEST


def test_secrets_are_never_indexed_and_stay_so_at_the_peer() -> None:
    enc = Encoder()
    fields = [
        (b"authorization", b"Bearer abc.def.ghi"),
        (b"cookie", b"sid=1"),  # short: guessable
        (b"cookie", b"session=" + b"x" * 40),  # long: indexed
        NeverIndexedHeaderTuple(b"x-api-key", b"k"),
    ]
    block = enc.encode(fields)
    decoded = hpack.Decoder().decode(block, raw=True)
    assert [isinstance(f, NeverIndexedHeaderTuple) for f in decoded] == [True, True, False, True]
    assert [tuple(f) for f in decoded] == [tuple(f) for f in fields]
    assert [f[0] for f in reversed(enc.table.entries)] == [b"cookie"]
    ours = Decoder().decode(block)
    assert [isinstance(f, NeverIndexedHeaderTuple) for f in ours] == [True, True, False, True]


def test_table_size_changes_are_announced_smallest_first() -> None:
    enc = Encoder()
    enc.encode([(b"x-a", b"1")])
    enc.header_table_size = 0
    enc.header_table_size = 256
    block = enc.encode([(b"x-b", b"2")])
    assert block[:4] == bytes.fromhex("203fe101")  # 0, then 256
    dec = hpack.Decoder()
    dec.decode(Encoder().encode([(b"x-a", b"1")]), raw=True)
    dec.max_allowed_table_size = 256
    assert dec.decode(block, raw=True) == [(b"x-b", b"2")]
    assert [f[0] for f in enc.table.entries] == [b"x-b"]


def test_a_field_too_large_for_the_table_is_not_indexed() -> None:
    enc = Encoder()
    enc.header_table_size = 200
    enc.encode([(b"x-small", b"1"), (b"x-large", b"v" * 150)])
    assert [f[0] for f in enc.table.entries] == [b"x-small"]


def test_a_peer_allowing_a_huge_table_does_not_get_one() -> None:
    """The peer's SETTINGS_HEADER_TABLE_SIZE is a maximum: the encoder keeps 4096 octets at
    most and says so, so the peer's decoder stays in step."""
    enc, dec = Encoder(), hpack.Decoder()
    enc.header_table_size = 1 << 30
    dec.max_allowed_table_size = 1 << 30
    for i in range(500):
        fields = [(b"x-request", b"%d" % i + b"v" * 100)]
        assert dec.decode(enc.encode(fields), raw=True) == fields
    assert enc.header_table_size == 4096
    assert enc.table.size <= 4096
    assert dec.header_table_size == 4096


def test_trace_ids_go_raw_and_leave_the_table_to_fields_that_repeat() -> None:
    """A ``traceparent`` differs in every request: after the first (which indexes its name),
    each is a literal without indexing whose value is raw (hex digits gain a third from
    Huffman coding, a few octets, for processor time at both ends); the other fields keep
    their entries, and ``hpack``'s decoder reads every block."""
    enc, ref, ours = Encoder(), hpack.Decoder(), Decoder()
    for n in range(3):
        trace = f"00-{n:032x}-{n + 1:016x}-01".encode()
        fields = [*GRPC_REQUEST, (b"traceparent", trace), (b"x-request-id", b"r%d" % n)]
        block = enc.encode(fields)
        assert [tuple(f) for f in ref.decode(block, raw=True)] == fields
        assert ours.decode(block) == fields
    names = [f[0] for f in enc.table.entries]
    assert names.count(b"traceparent") == 1 and names.count(b"x-request-id") == 1  # the first
    assert trace in block  # the last value raw, as it is
    huffman = Encoder().encode([(b"x-other-id", trace)])
    assert trace not in huffman  # another field's hex value is Huffman-coded
