"""Body plumbing for an exchange: request and response bodies through the chain.

:class:`BodyStage` runs one direction's data hooks chunk by chunk and handles a
``Buffer`` from a data hook: the chunks after it pass the earlier filters and
are collected (up to the limit); at the end the rest of the chain sees them as
one chunk with ``end_stream=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import (
    BodyTooLarge,
    DownstreamProtocolError,
    Headers,
    LocalReply,
    MessageBody,
    RequestTimeout,
    UpstreamReset,
    UpstreamTimeout,
)

from ..codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ProtocolFailed,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from ..upstream.stream import UpstreamStream
from .chain import ChainRun, Hook
from .phase import PhaseOutcome, settle
from .streams import Downstream

if TYPE_CHECKING:
    from .machine import Exchange

__all__ = ["BodyStage", "ClientLeft", "LocalReplyRaised", "RequestBody", "UpstreamBody"]

_EMPTY: Final = PhaseOutcome()


class LocalReplyRaised(DownstreamProtocolError):
    """A request-data filter answered locally while the body was streaming."""

    def __init__(self, reply: LocalReply) -> None:
        super().__init__(reply.reason)
        self.reply = reply


class BodyStage:
    """One direction's data and trailer hooks over a streamed body."""

    __slots__ = ("_barrier", "_buf", "_data", "_limit", "_run", "_trailers")

    def __init__(
        self, run: ChainRun, data_hooks: tuple[Hook, ...], trailer_hooks: tuple[Hook, ...]
    ) -> None:
        self._run = run
        self._data = data_hooks
        self._trailers = trailer_hooks
        self._barrier: int | None = None
        self._limit = 0
        self._buf = bytearray()

    async def _walk(self, data: bytes, end_stream: bool, start: int, stop: int) -> PhaseOutcome:
        return await settle(self._run.data(self._data, data, end_stream, start, stop))

    async def push(self, data: bytes, end_stream: bool) -> PhaseOutcome:
        """The chunk to pass on (``.data``), or a reply."""
        if self._barrier is None:
            out = await self._walk(data, end_stream, 0, -1)
            if out.buffer_from is None:
                return out
            self._barrier, self._limit = out.buffer_from, out.buffer_limit
            self._buf += out.data
            return _EMPTY
        out = await self._walk(data, end_stream, 0, self._barrier)
        if out.reply is not None:
            return out
        self._buf += out.data
        if len(self._buf) > self._limit:
            raise BodyTooLarge(f"body exceeds the {self._limit}-byte buffer limit of a filter")
        if not end_stream:
            return _EMPTY
        return await self._walk(bytes(self._buf), True, self._barrier, -1)

    async def trailers(self, trailers: Headers) -> PhaseOutcome:
        if self._barrier is not None and self._buf:
            out = await self._walk(bytes(self._buf), True, self._barrier, -1)
            if out.reply is not None:
                return out
        return await settle(self._run.trailers(self._trailers, trailers))


class RequestBody(MessageBody):
    """The downstream request body, read on demand through the request data hooks."""

    def __init__(self, down: Downstream, stage: BodyStage, idle: float) -> None:
        self._down = down
        self._stage = stage
        self._idle = idle
        """The longest wait for the next piece of the body (the listener's idle timeout)."""
        self._done = False
        self.reply: LocalReply | None = None
        self.received = 0
        """Body bytes read from the client (before the data hooks): the access log's count."""

    async def _next(self) -> Event:
        try:
            with anyio.fail_after(self._idle):
                return await self._down.read_event()
        except TimeoutError:
            self._done = True
            raise RequestTimeout(f"request body idle for {self._idle:g}s") from None

    async def read(self) -> bytes:
        while not self._done:
            ev = await self._next()
            if isinstance(ev, DataReceived):
                self._done = ev.end_stream
                self.received += len(ev.data)
                out = await self._stage.push(ev.data, ev.end_stream)
            elif isinstance(ev, TrailersReceived):
                self._done = True
                out = await self._stage.trailers(ev.trailers)
                self.trailers = ev.trailers
            elif isinstance(ev, StreamReset):
                self._done = True
                raise ClientLeft("the client reset the stream")
            elif isinstance(ev, ProtocolFailed):  # the body's framing is broken
                self._done = True
                raise DownstreamProtocolError(ev.message)
            elif isinstance(ev, ConnectionTerminated):
                self._done = True
                raise ClientLeft("the client closed the connection mid-body")
            else:
                continue
            if out.reply is not None:
                self.reply = out.reply
                raise LocalReplyRaised(out.reply)
            if out.data:
                return out.data
        return b""


class ClientLeft(DownstreamProtocolError):
    """The client reset the stream or closed the connection mid-body: nobody is left to
    answer (the stream's cancellation records why it ended). Any other error from
    :meth:`RequestBody.read` (broken framing, a buffer limit) is answered."""

    reason = "client closed"


class UpstreamBody(MessageBody):
    """The upstream response body; gives the connection back to its pool at the end."""

    def __init__(self, ex: Exchange, stream: UpstreamStream, ev: ResponseReceived) -> None:
        self._ex = ex
        self._stream = stream
        self._done = ev.end_stream
        self._first = b""
        self.idle_timeout: float | None = None
        """Reset the stream when the next event takes longer (``timeouts.streamIdle``)."""
        if ev.end_stream:
            self.whole = ev.body
            self.trailers = ev.trailers
        else:
            self._first = ev.body

    async def read(self) -> bytes:
        if self.whole is not None:
            data, self.whole = self.whole, None
            return data
        if self._first:
            data, self._first = self._first, b""
            return data
        while not self._done:
            if self.idle_timeout:
                try:
                    with anyio.fail_after(self.idle_timeout):
                        ev = await self._stream.read_event()
                except TimeoutError:
                    self._done = True
                    raise UpstreamTimeout(
                        f"response body idle for {self.idle_timeout}s (streamIdle)"
                    ) from None
            else:
                ev = await self._stream.read_event()
            if isinstance(ev, DataReceived):
                if ev.end_stream:
                    self._finish()
                if ev.data:
                    return ev.data
            elif isinstance(ev, TrailersReceived):
                self.trailers = ev.trailers
                self._finish()
            elif isinstance(ev, StreamReset):
                self._done = True
                raise UpstreamReset("upstream reset the stream mid-response")
        return b""

    def _finish(self) -> None:
        self._done = True
        self._stream.finish(True)
        if self._stream in self._ex.upstreams:
            self._ex.upstreams.remove(self._stream)
