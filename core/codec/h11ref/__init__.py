"""The reference HTTP/1.1 codecs, on h11: strict, slow, and the oracle for the fast ones.

Same interface and semantics as ``plait.core.codec.http1`` (``H1ServerCodec``,
``H1ClientCodec``); the differential tests feed both the same bytes and calls
and compare the events and bytes. Where h11 is laxer than RFC 9112 the raw
checks of ``strict`` make it strict; where it is stricter than the
fast codec's rules (HTTP/1.0 keep-alive), the codec decides framing and
connection handling itself and uses h11 only to check and serialise.

Modules: ``base`` (head cutting, event assembly, body writing), ``server``,
``client``, ``strict`` (raw grammar); the framing rules are ``http1.rules``.
This package imports no anyio, asyncio or socket module.
"""

from .client import H1ClientCodec
from .server import H1ServerCodec

__all__ = ["H1ClientCodec", "H1ServerCodec"]
