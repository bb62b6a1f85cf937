"""A header block that cannot be decoded is a connection error of type COMPRESSION_ERROR.

RFC 9113 §4.3: the HPACK state is shared by the whole connection, so after a
decoding error no later block can be trusted. Each case sends one malformed
block (RFC 7541's decoding errors) from a raw peer, in a HEADERS frame alone or
split across CONTINUATION frames, and checks that the codec reports the
connection terminated and sends GOAWAY with COMPRESSION_ERROR (0x9), while a
header list that is merely too large stays ENHANCE_YOUR_CALM (a denial of service).
"""

from __future__ import annotations

import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from plait.core.codec import ConnectionTerminated, RequestReceived

from .test_frames import GET, RawPeer, goaways, no_codec_warnings, server

COMPRESSION_ERROR = 0x9

BAD_BLOCKS = {
    "index 0": bytes.fromhex("80"),
    "index past the tables": bytes.fromhex("82" "c0"),
    "truncated string": bytes.fromhex("82" "4005616263"),
    "integer too long": bytes.fromhex("ff" + "ff" * 5 + "01"),
    "Huffman string padded with zeros": bytes.fromhex("82" "0081" "00" "0161"),
    "Huffman string containing EOS": bytes.fromhex("82" "0084ffffffff" "0161"),
    "table size update over the limit": bytes.fromhex("3fe21f" "82"),
    "table size update after a field": bytes.fromhex("82" "20"),
}  # fmt: skip


@pytest.mark.parametrize("split", [False, True], ids=["headers", "continuation"])
@pytest.mark.parametrize("name", list(BAD_BLOCKS))
def test_undecodable_header_block_is_compression_error(name: str, split: bool) -> None:
    codec = server()
    block = BAD_BLOCKS[name]
    if split and len(block) > 1:
        wire = HeadersFrame(1, block[:1], flags=["END_STREAM"]).serialize()
        wire += ContinuationFrame(1, block[1:], flags=["END_HEADERS"]).serialize()
    else:
        wire = HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
    with no_codec_warnings():
        events = codec.receive_data(wire)
    assert events == [ConnectionTerminated(error_code=COMPRESSION_ERROR)]
    assert [g.error_code for g in goaways(codec.data_to_send())] == [COMPRESSION_ERROR]


def test_a_good_block_after_a_good_block_still_decodes() -> None:
    """The codec's HPACK state follows the peer's across blocks (dynamic table references)."""
    codec = server()
    peer = RawPeer()
    fields = [*GET, (b"x-repeat", b"value")]
    first = codec.receive_data(peer.headers(1, fields, end_stream=True))
    second = codec.receive_data(peer.headers(3, fields, end_stream=True))
    assert [type(e) for e in first + second] == [RequestReceived, RequestReceived]
    assert isinstance(second[0], RequestReceived)
    assert second[0].head.headers.get("x-repeat") == "value"
