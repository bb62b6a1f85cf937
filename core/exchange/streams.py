"""The two sides of one exchange, as the version-independent proxy logic sees them.

HTTP/1.1 and HTTP/2 connections (downstream in ``core/server``, upstream in
``core/upstream``) implement these; the exchange machine uses nothing
else, so it never knows which HTTP version either side speaks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from plait.sdk import ConnectionContext, Headers, ResponseHead

from ..codec import Event

if TYPE_CHECKING:
    from .driver import Inline

__all__ = ["Downstream", "InlineHost"]


class Downstream(Protocol):
    """The client side of one stream."""

    conn_ctx: ConnectionContext
    response_started: bool
    """True once a response head went out; then errors can only reset the stream."""
    closing: bool
    """Ask the connection to close after this response (HTTP/1.1: ``connection: close``)."""

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        """Send the head (and the whole body when ``end_stream``)."""

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        """Send a body chunk; waits while the client reads slower than we write."""

    def send_trailers(self, trailers: Headers) -> None: ...

    def send_informational(self, head: ResponseHead) -> None: ...

    def send_raw(self, data: bytes) -> None:
        """Tunnel bytes (after a 101)."""

    async def read_event(self) -> Event:
        """The next request-body/tunnel event of this stream; ``StreamReset`` if the client left."""
        ...

    def reset(self) -> None:
        """Abort the stream (the response cannot be completed)."""


class InlineHost(Downstream, Protocol):
    """A downstream stream whose exchange may run in protocol callbacks
    (:class:`~.driver.Inline`): an HTTP/1.1 connection, or one HTTP/2 stream."""

    @property
    def listener(self) -> Any:
        """The listener that accepted the connection (its task group takes hand-overs)."""
        ...

    def end_inline(self, inline: Inline) -> None:
        """The inline exchange ended (in a callback, or in the task it was handed to)."""
