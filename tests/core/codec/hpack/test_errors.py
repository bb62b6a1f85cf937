"""Every RFC 7541 decoding error is an :class:`HpackError`, and ``hpack`` refuses the same block.

Each case is a hand-built block that breaks one rule of the RFC; plait's
decoder must raise :class:`HpackError` (with a message naming the problem)
and the reference decoder must raise too.
"""

from __future__ import annotations

import hpack
import pytest

from plait.core.codec.hpack import Decoder, Encoder, HeaderListTooLarge, HpackError

CASES = {
    # §2.3.3: index 0, and an index past the end of the (empty) dynamic table.
    "indexed field 0": ("80", "invalid table index 0"),
    "index past the tables": ("be", "invalid table index 62"),
    "literal name index past the tables": ("7f00" "0161", "invalid table index 63"),
    # §5.1: integers that end early or run on.
    "truncated integer": ("ff", "truncated inside an integer"),
    "integer over the limit": ("ff" + "ff" * 5 + "01", "integer longer"),
    # §5.2: strings that end early, contain EOS or are padded wrong.
    "truncated string": ("4005616263", "truncated inside a string"),
    "missing value": ("4003616263", "truncated"),
    "Huffman EOS": ("0084ffffffff" "0161", "EOS"),
    "Huffman padding of 8 bits": ("0082" "1fff" "0161", "padded"),
    "Huffman padding of zeros": ("0081" "00" "0161", "padded"),
    # §4.2 and §6.3: a size update over the limit, or after a field.
    "size update over the limit": ("3fe21f", "over the limit 4096"),
    "size update after a field": ("82" "20", "after a field"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_blocks_raise_hpack_error_like_the_reference(name: str) -> None:
    block_hex, message = CASES[name]
    block = bytes.fromhex(block_hex)
    with pytest.raises(HpackError, match=message):
        Decoder().decode(block)
    with pytest.raises(hpack.HPACKDecodingError):
        hpack.Decoder().decode(block, raw=True)


def test_a_shrunk_limit_requires_a_size_update_at_the_next_block() -> None:
    dec = Decoder()
    dec.max_allowed_table_size = 100  # our SETTINGS_HEADER_TABLE_SIZE, acknowledged
    with pytest.raises(HpackError, match="did not shrink"):
        dec.decode(bytes.fromhex("82"))
    dec = Decoder()
    dec.max_allowed_table_size = 100
    assert dec.decode(bytes.fromhex("3f4582")) == [(b":method", b"GET")]  # size 100, then a field
    assert dec.header_table_size == 100


def test_a_header_list_over_the_limit_is_refused() -> None:
    enc = Encoder()
    block = enc.encode([(b"x-a", b"v" * 50), (b"x-b", b"v" * 50)])
    dec = Decoder(max_header_list_size=120)  # first field is 3 + 50 + 32 = 85 octets
    with pytest.raises(HeaderListTooLarge, match="larger than 120"):
        dec.decode(block)
    assert Decoder(max_header_list_size=170).decode(block)[1] == (b"x-b", b"v" * 50)


def test_an_entry_larger_than_the_table_empties_it() -> None:
    dec = Decoder()
    dec.header_table_size = 100
    dec.decode(Encoder().encode([(b"x-a", b"1")]))  # the encoder's table is larger: indexed
    assert len(dec.table) == 1
    block = bytes([0x40, 3]) + b"x-b" + bytes([70]) + b"v" * 70  # 105 octets > 100
    assert dec.decode(block) == [(b"x-b", b"v" * 70)]
    assert len(dec.table) == 0 and dec.table.size == 0
