"""The fast HTTP/1.1 codecs, on llhttp (httptools): the data path.

``H1ServerCodec`` (downstream: parses requests, frames responses) lives in
``server``, ``H1ClientCodec`` (upstream: frames requests, parses responses) in
``client``; both build on ``base`` (segmented feeding of llhttp, body framing)
and ``rules`` (the RFC 9110/9112 decisions shared with the h11 reference codec
in ``plait.core.codec.h11ref``).

This package imports no anyio, asyncio or socket module.
"""

from .client import H1ClientCodec
from .server import H1ServerCodec

__all__ = ["H1ClientCodec", "H1ServerCodec"]
