"""One upstream stream, as the exchange sees it, whatever HTTP version the upstream speaks.

The HTTP/1.1 and HTTP/2 pools (``_h1.py``, ``_h2.py``) hand these out; the
exchange (``core/exchange``) uses nothing else of an upstream connection.
"""

from __future__ import annotations

from typing import Protocol

from plait.sdk import Headers, RequestHead

from ..codec import Event

__all__ = ["UpstreamStream"]


class UpstreamStream(Protocol):
    """The server side of one stream, taken from a connection pool."""

    reused: bool
    """The connection served earlier requests (an early reset may be a stale keep-alive)."""

    def send_head(
        self, head: RequestHead, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None: ...

    async def send_data(self, data: bytes, *, end_stream: bool) -> None: ...

    def send_trailers(self, trailers: Headers) -> None: ...

    def send_raw(self, data: bytes) -> None: ...

    async def read_event(self) -> Event:
        """The next response event; ``StreamReset`` if the upstream went away."""
        ...

    def finish(self, complete: bool) -> None:
        """Return the connection to its pool (``complete``) or close it; idempotent."""

    def reset(self) -> None: ...
