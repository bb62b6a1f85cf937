"""The reference HTTP/1.1 codecs, on h11: strict, slow, and the oracle for the fast ones.

Same interface and semantics as ``_http1`` (``H1ServerCodec``,
``H1ClientCodec``); the differential tests feed both the same bytes and calls
and compare the events and bytes. Where h11 is laxer than RFC 9112 the raw
checks of ``_h11ref_strict`` make it strict; where it is stricter than the
fast codec's rules (HTTP/1.0 keep-alive), the codec decides framing and
connection handling itself and uses h11 only to check and serialise.

Modules: ``_h11ref_base`` (head cutting, event assembly, body writing),
``_h11ref_server``, ``_h11ref_client``, ``_h11ref_strict`` (raw grammar).
This package imports no anyio, asyncio or socket module.
"""

from ._h11ref_client import H1ClientCodec
from ._h11ref_server import H1ServerCodec

__all__ = ["H1ClientCodec", "H1ServerCodec"]
