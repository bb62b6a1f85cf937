"""HPACK (RFC 7541), plait's own, compiled with mypyc.

``_huffman`` holds the Huffman code (table-driven decoding), ``_table`` the
static and dynamic tables, ``_codec`` the :class:`Encoder` and :class:`Decoder`
of header blocks and the :class:`HpackError` every malformed block raises. The
``hpack`` package is the reference the differential tests compare against.

This package imports no anyio, asyncio or socket module.
"""

from ._codec import (
    DEFAULT_MAX_HEADER_LIST_SIZE,
    DEFAULT_TABLE_SIZE,
    Decoder,
    Encoder,
    HeaderListTooLarge,
    HpackError,
)

__all__ = [
    "DEFAULT_MAX_HEADER_LIST_SIZE",
    "DEFAULT_TABLE_SIZE",
    "Decoder",
    "Encoder",
    "HeaderListTooLarge",
    "HpackError",
]
