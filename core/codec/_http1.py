"""The fast HTTP/1.1 codecs, on llhttp (httptools): the data path.

``H1ServerCodec`` (downstream: parses requests, frames responses) lives in
``_http1_server``, ``H1ClientCodec`` (upstream: frames requests, parses
responses) in ``_http1_client``; both build on ``_http1_base`` (segmented
feeding of llhttp, body framing) and ``_http1_rules`` (the RFC 9110/9112
decisions shared with the h11 reference codec in ``_h11ref``).

This package imports no anyio, asyncio or socket module.
"""

from ._http1_client import H1ClientCodec
from ._http1_server import H1ServerCodec

__all__ = ["H1ClientCodec", "H1ServerCodec"]
