"""RFC 7541 Appendix C: the examples, byte for byte, through plait's decoder and ``hpack``'s.

Each example is a sequence of header blocks sharing one dynamic table; after
each block the decoded list and the dynamic table (entries and size) must be
the ones the RFC prints. The same blocks go through ``hpack``'s decoder, which
must agree (the reference); and plait's encoder, fed the same header lists with
the table size the example uses, must produce blocks both decoders read back
(not the same octets: it indexes less, see ``test_encoder``).
"""

from __future__ import annotations

import hpack
import pytest

from plait.core.codec.hpack import Decoder, Encoder

Fields = list[tuple[bytes, bytes]]

REQ1: Fields = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"www.example.com"),
]
REQ2: Fields = [*REQ1, (b"cache-control", b"no-cache")]
REQ3: Fields = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/index.html"),
    (b":authority", b"www.example.com"),
    (b"custom-key", b"custom-value"),
]
RESP1: Fields = [
    (b":status", b"302"),
    (b"cache-control", b"private"),
    (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
    (b"location", b"https://www.example.com"),
]
RESP2: Fields = [(b":status", b"307"), *RESP1[1:]]
RESP3: Fields = [
    (b":status", b"200"),
    (b"cache-control", b"private"),
    (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
    (b"location", b"https://www.example.com"),
    (b"content-encoding", b"gzip"),
    (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
]
T_REQ1 = [(b":authority", b"www.example.com")]
T_REQ2 = [(b"cache-control", b"no-cache"), *T_REQ1]
T_REQ3 = [(b"custom-key", b"custom-value"), *T_REQ2]
T_RESP1 = [
    (b"location", b"https://www.example.com"),
    (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
    (b"cache-control", b"private"),
    (b":status", b"302"),
]
T_RESP2 = [(b":status", b"307"), *T_RESP1[:3]]
T_RESP3 = [
    (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
    (b"content-encoding", b"gzip"),
    (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
]

# name -> (table size, the blocks in hex)
BLOCKS = {
    "C.3 requests, no Huffman": (4096, [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ]),
    "C.4 requests, Huffman": (4096, [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ]),
    "C.5 responses, no Huffman, 256-octet table": (256, [
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
        "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        "4803333037c1c0bf",
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69"
        "707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d6178"
        "2d6167653d333630303b2076657273696f6e3d31",
    ]),
    "C.6 responses, Huffman, 256-octet table": (256, [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29"
        "ad171863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7"
        "f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d50"
        "07",
    ]),
}  # fmt: skip
# (fields, dynamic table newest first, table size in octets) after each block
REQUEST_STEPS = [(REQ1, T_REQ1, 57), (REQ2, T_REQ2, 110), (REQ3, T_REQ3, 164)]
RESPONSE_STEPS = [(RESP1, T_RESP1, 222), (RESP2, T_RESP2, 222), (RESP3, T_RESP3, 215)]
EXAMPLES = {
    name: (
        size,
        [
            (h, *step)
            for h, step in zip(
                blocks,
                REQUEST_STEPS if name.startswith(("C.3", "C.4")) else RESPONSE_STEPS,
                strict=True,
            )
        ],
    )
    for name, (size, blocks) in BLOCKS.items()
}


def _steps(name: str) -> tuple[int, list[tuple[str, Fields, Fields, int]]]:
    return EXAMPLES[name]


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_decoders_read_the_rfc_blocks_and_build_its_tables(name: str) -> None:
    size, steps = _steps(name)
    ours = Decoder()
    ours.header_table_size = size
    ref = hpack.Decoder()
    ref.header_table_size = size
    for block_hex, fields, table, table_size in steps:
        block = bytes.fromhex(block_hex)
        assert ours.decode(block) == fields
        assert ref.decode(block, raw=True) == fields
        assert list(reversed(ours.table.entries)) == table
        assert ours.table.size == table_size


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_our_encoder_round_trips_the_rfc_header_lists(name: str) -> None:
    size, steps = _steps(name)
    enc = Encoder()
    enc.header_table_size = size
    ours = Decoder()
    ref = hpack.Decoder()
    for _, fields, _, _ in steps:
        block = enc.encode(fields, huffman="Huffman" in name)
        assert ours.decode(block) == fields
        assert ref.decode(block, raw=True) == fields
