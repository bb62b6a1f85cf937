"""plait's compiled HPACK codec in the place of ``hpack``'s inside an ``h2`` connection.

Theory of operation: ``h2.H2Connection`` holds an ``encoder`` and a ``decoder``
and uses a small part of their API: ``encoder.encode(headers)`` and
``encoder.header_table_size`` (the peer's SETTINGS_HEADER_TABLE_SIZE);
``decoder.decode(block, raw=True)``, ``decoder.max_header_list_size`` and
``decoder.max_allowed_table_size`` (our own settings). plait's
:class:`~plait.core.codec.hpack.Encoder` has that API as it is. Its
:class:`~plait.core.codec.hpack.Decoder` raises its own :class:`HpackError`,
which h2 does not know, so :class:`H2Decoder` translates: an oversized header
list becomes ``hpack``'s ``OversizedHeaderListError`` (h2 answers it as a
denial of service: GOAWAY ENHANCE_YOUR_CALM) and every other decoding error
``HPACKDecodingError``, both chained to plait's error. h2 turns the latter into
a PROTOCOL_ERROR; the connection (``conn.py``) raises :class:`CompressionError`
in its place, as RFC 9113 §4.3 requires.
"""

from __future__ import annotations

from collections.abc import Iterable

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hpack.exceptions import HPACKDecodingError, OversizedHeaderListError

from plait.core.codec.hpack import Decoder, Encoder, HeaderListTooLarge, HpackError

__all__ = ["CompressionError", "Encoder", "H2Decoder"]


class CompressionError(ProtocolError):
    """A header block that cannot be decoded: the connection's HPACK state is lost, and
    RFC 9113 §4.3 makes that a connection error of type COMPRESSION_ERROR."""

    error_code = ErrorCodes.COMPRESSION_ERROR

    @staticmethod
    def caused(exc: ProtocolError) -> bool:
        """Whether h2 raised ``exc`` (a plain PROTOCOL_ERROR) for an HPACK decoding error."""
        return type(exc) is ProtocolError and isinstance(exc.__cause__, HPACKDecodingError)


class H2Decoder:
    """plait's HPACK decoder with the interface and the exceptions ``h2`` expects."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = Decoder()

    @property
    def max_header_list_size(self) -> int:
        return self._decoder.max_header_list_size

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        self._decoder.max_header_list_size = value

    @property
    def max_allowed_table_size(self) -> int:
        return self._decoder.max_allowed_table_size

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._decoder.max_allowed_table_size = value

    @property
    def header_table_size(self) -> int:
        return self._decoder.header_table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._decoder.header_table_size = value

    def decode(self, data: bytes, raw: bool = False) -> Iterable[tuple[bytes, bytes]]:
        if not raw:
            raise ValueError("plait's HPACK decoder returns bytes only (raw=True)")
        try:
            return self._decoder.decode(data)
        except HeaderListTooLarge as exc:
            raise OversizedHeaderListError(str(exc)) from exc
        except HpackError as exc:
            raise HPACKDecodingError(str(exc)) from exc
