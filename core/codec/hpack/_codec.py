"""HPACK header block encoder and decoder (RFC 7541), compiled with mypyc.

Theory of operation: a :class:`Decoder` walks a complete header block once,
dispatching on the high bits of each representation's first octet (§6):
indexed field (``1xxxxxxx``), literal with incremental indexing
(``01xxxxxx``), dynamic table size update (``001xxxxx``), literal never
indexed (``0001xxxx``) and literal without indexing (``0000xxxx``). Integers
(§5.1) are read with at most :data:`MAX_INTEGER_OCTETS` continuation octets;
strings (§5.2) are raw or Huffman-coded (``_huffman``). A never-indexed field
is returned as an ``hpack`` ``NeverIndexedHeaderTuple``, the type the rest of
plait (and ``h2``) use to forward it never-indexed; every other field is a
plain ``(name, value)`` tuple.

Every malformed block raises :class:`HpackError` (the decoding errors of
§2.3.3, §4.2, §5.1, §5.2, §6.3) or its subclass :class:`HeaderListTooLarge`;
after an error the connection's HPACK state is unusable and the connection
must be closed with COMPRESSION_ERROR (RFC 9113 §4.3).

An :class:`Encoder` represents each field as compactly as its tables allow: a
full match is indexed; otherwise the name is indexed when known, and the field
is added to the dynamic table unless it is sensitive (never indexed: the
``authorization`` fields, cookies shorter than 20 octets, fields passed as
``NeverIndexedHeaderTuple``), its value changes with nearly every message
(:data:`UNINDEXED`; the first such field of a name no table holds is indexed,
so that the name can be referred to), or it would take over three quarters of
the table. A string is Huffman-coded when that makes it shorter, but for the values
of random identifiers (:data:`IDENTIFIERS`: trace context, request ids). Table size changes are
announced at the start of the next block, the smallest first (§4.2); the
encoder's table never exceeds :data:`MAX_ENCODER_TABLE_SIZE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, cast

from hpack.struct import NeverIndexedHeaderTuple

from ._huffman import HuffmanError, encoded_length
from ._huffman import decode as huffman_decode
from ._huffman import encode_into as huffman_encode_into
from ._table import (
    STATIC,
    STATIC_EXACT,
    STATIC_LEN,
    STATIC_NAMES,
    STATIC_VALUED,
    DynamicTable,
    Field,
    entry_size,
)

__all__ = [
    "DEFAULT_MAX_HEADER_LIST_SIZE",
    "DEFAULT_TABLE_SIZE",
    "Decoder",
    "Encoder",
    "HeaderListTooLarge",
    "HpackError",
]

DEFAULT_TABLE_SIZE: Final = 4096
DEFAULT_MAX_HEADER_LIST_SIZE: Final = 65536
MAX_INTEGER_OCTETS: Final = 5
"""Continuation octets accepted after an integer's prefix (enough for 2**35)."""

MAX_ENCODER_TABLE_SIZE: Final = DEFAULT_TABLE_SIZE
"""The most dynamic table an encoder keeps, whatever the peer allows: a peer announcing a
huge SETTINGS_HEADER_TABLE_SIZE would otherwise make every connection hold up to that much
of the fields sent on it."""

SENSITIVE: Final = frozenset({b"authorization", b"proxy-authorization"})
LONG_RAW: Final = 16
"""A raw string this long or longer joins the block as it is; a shorter one octet by octet
(the block is built as a list of octets, then made bytes at once)."""
SHORT_COOKIE: Final = 20
IDENTIFIERS: Final = frozenset(
    {
        b"traceparent",
        b"b3",
        b"x-b3-traceid",
        b"x-b3-spanid",
        b"x-b3-parentspanid",
        b"x-request-id",
    }
)
"""Fields whose values are random identifiers, new in every request (the mesh adds a
``traceparent`` to each one it traces): kept out of the dynamic table like the other
:data:`UNINDEXED` fields, and their values sent raw. Huffman coding makes hex digits
about a third shorter, a few octets a field, and costs both ends more processor time
than the rest of the field's coding."""
UNINDEXED: Final = IDENTIFIERS | frozenset(
    {
        b"age",
        b"content-length",
        b"etag",
        b"grpc-timeout",
        b"if-modified-since",
        b"if-none-match",
        b"location",
        b"set-cookie",
    }
)
"""Fields whose values rarely repeat: indexing them would only evict useful entries.
(``:path`` is indexed: a gRPC client calls the same few methods over and over.)"""


class HpackError(ValueError):
    """A header block that breaks RFC 7541: the connection's HPACK state is lost."""


class HeaderListTooLarge(HpackError):
    """A header block that decodes to more than the decoder's ``max_header_list_size``."""


def _integer(data: bytes, pos: int, mask: int) -> tuple[int, int]:
    """The integer whose prefix is the ``mask`` bits of ``data[pos]``, and the position after it."""
    end = len(data)
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= end:
            raise HpackError("header block truncated inside an integer")
        if shift >= 7 * MAX_INTEGER_OCTETS:
            raise HpackError("integer longer than the decoder accepts")
        octet = data[pos]
        pos += 1
        value += (octet & 0x7F) << shift
        if octet < 0x80:
            return value, pos
        shift += 7


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise HpackError("header block truncated before a string")
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 0x7F)
    end = pos + length
    if end > len(data):
        raise HpackError("header block truncated inside a string")
    raw = data[pos:end]
    if not huffman:
        return raw, end
    try:
        return huffman_decode(raw), end
    except HuffmanError as exc:
        raise HpackError(str(exc)) from None


class Decoder:
    """Decodes the header blocks one peer sends on one connection, in order."""

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        self.table = DynamicTable(DEFAULT_TABLE_SIZE)
        self.max_header_list_size = max_header_list_size
        self.max_allowed_table_size = DEFAULT_TABLE_SIZE
        """The SETTINGS_HEADER_TABLE_SIZE last acknowledged: the most a size update may ask."""

    @property
    def header_table_size(self) -> int:
        return self.table.max_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.table.resize(value)

    def _field(self, index: int) -> Field:
        if 0 < index <= STATIC_LEN:
            return STATIC[index - 1]
        field = self.table.get(index - STATIC_LEN)
        if field is None:
            raise HpackError(f"invalid table index {index}")
        return field

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The fields of one complete header block (a HEADERS and its CONTINUATIONs)."""
        fields: list[Field] = []
        field: Field
        pos = 0
        end = len(data)
        total = 0
        limit = self.max_header_list_size
        while pos < end:
            first = data[pos]
            if first & 0x80:
                index, pos = _integer(data, pos, 0x7F)
                field = self._field(index)
            elif first & 0x20 and not first & 0x40:
                if fields:
                    raise HpackError("dynamic table size update after a field")
                size, pos = _integer(data, pos, 0x1F)
                if size > self.max_allowed_table_size:
                    raise HpackError(
                        f"dynamic table size update to {size}, over the limit "
                        f"{self.max_allowed_table_size}"
                    )
                self.table.resize(size)
                continue
            else:
                indexing = bool(first & 0x40)
                index, pos = _integer(data, pos, 0x3F if indexing else 0x0F)
                if index:
                    name = self._field(index)[0]
                else:
                    name, pos = _string(data, pos)
                value, pos = _string(data, pos)
                if first & 0x10 and not indexing:
                    field = NeverIndexedHeaderTuple(name, value)
                else:
                    field = (name, value)
                if indexing:
                    self.table.add(field)
            fields.append(field)
            total += entry_size(field[0], field[1])
            if total > limit:
                raise HeaderListTooLarge(f"header list larger than {limit} octets")
        if self.table.max_size > self.max_allowed_table_size:
            raise HpackError("the encoder did not shrink its table to the announced limit")
        return cast("list[tuple[bytes, bytes]]", fields)


def _put_integer(out: list[int], value: int, bits: int, flags: int) -> None:
    """Append ``value`` with a ``bits``-bit prefix, ``flags`` in the first octet's high bits."""
    mask = (1 << bits) - 1
    if value < mask:
        out.append(flags | value)
        return
    out.append(flags | mask)
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_string(out: list[int], parts: list[bytes], data: bytes, huffman: bool) -> None:
    """A string: its octets go to ``out``, but for a long raw string, which goes to
    ``parts`` as it is after the octets before it (no octet-by-octet copy)."""
    if huffman and data:
        n = encoded_length(data)
        if n < len(data):
            _put_integer(out, n, 7, 0x80)
            huffman_encode_into(out, data)
            return
    _put_integer(out, len(data), 7, 0)
    if len(data) < LONG_RAW:
        out.extend(data)
    else:
        parts.append(bytes(out))
        out.clear()
        parts.append(data)


class Encoder:
    """Encodes the header blocks one side sends on one connection, in order."""

    def __init__(self) -> None:
        self.table = DynamicTable(DEFAULT_TABLE_SIZE, searchable=True)
        self._smallest = -1  # the smallest size set since the last block, or -1

    @property
    def header_table_size(self) -> int:
        return self.table.max_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """Apply the peer's SETTINGS_HEADER_TABLE_SIZE (announced in the next block), up to
        :data:`MAX_ENCODER_TABLE_SIZE`: an encoder may use less than the peer allows (§4.2)."""
        value = min(value, MAX_ENCODER_TABLE_SIZE)
        if value == self.table.max_size and self._smallest < 0:
            return
        if self._smallest < 0 or value < self._smallest:
            self._smallest = value
        self.table.resize(value)

    def encode(self, headers: Iterable[Field], huffman: bool = True) -> bytes:
        """One header block for ``headers`` (pseudo-headers first, as the caller orders them)."""
        out: list[int] = []  # (list.append is a C call in compiled code; bytearray's is not)
        parts: list[bytes] = []  # the block before ``out``, when it holds a long raw string
        table = self.table
        if self._smallest >= 0:
            if self._smallest < table.max_size:
                _put_integer(out, self._smallest, 5, 0x20)
            _put_integer(out, table.max_size, 5, 0x20)
            self._smallest = -1
        limit = table.max_size * 3 // 4
        for field in headers:
            name = field[0]
            value = field[1]
            never = name in SENSITIVE or (
                type(field) is not tuple and isinstance(field, NeverIndexedHeaderTuple)
            )
            if name == b"cookie" and len(value) < SHORT_COOKIE:
                never = True
            if not never:
                index = table.find(field)
                if not index and name in STATIC_VALUED:
                    index = STATIC_EXACT.get(field, 0)
                if index:
                    _put_integer(out, index, 7, 0x80)
                    continue
            name_index = STATIC_NAMES.get(name, 0) or table.find_name(name)
            unindexed = name in UNINDEXED
            if never:
                _put_integer(out, name_index, 4, 0x10)
            elif (not unindexed or not name_index) and entry_size(name, value) <= limit:
                # (An unindexed field whose name is in no table is indexed once, so that
                # its later values can refer to the name.)
                _put_integer(out, name_index, 6, 0x40)
                table.add((name, value))
            else:
                _put_integer(out, name_index, 4, 0)
            if not name_index:
                _put_string(out, parts, name, huffman)
            _put_string(out, parts, value, huffman and not (unindexed and name in IDENTIFIERS))
        if parts:
            parts.append(bytes(out))
            return b"".join(parts)
        return bytes(out)
