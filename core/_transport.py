"""Byte transport glue: asyncio Protocols feeding sans-I/O codecs.

Why Protocols: measured on this machine, a proxy built on asyncio Protocols
and httptools reaches ~0.8x nginx while the same proxy on stream wrappers
reaches ~0.65x, and on anyio streams + h11 ~0.08x (benchmarking.md). So the
byte path uses Protocols on the running (uvloop) loop, and everything above
the bytes (task lifetimes, cancellation, timeouts) is anyio. This module and
the connection modules that subclass it are the only places in plait that
touch asyncio APIs directly.

Theory of operation: :class:`EventProtocol` feeds every read to its codec and
queues the resulting events for exactly one consumer coroutine, which awaits
:meth:`EventProtocol.next_event`. Reading pauses above ``HIGH_WATER`` queued
events and resumes once the consumer drains below it (backpressure from the
consumer to the peer's TCP window). Writes go straight to the transport;
:meth:`drain` waits while the transport's buffer is above its high-water mark
(``pause_writing``), which is how a slow reader on one side throttles the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from .codec import Event

__all__ = ["Codec", "EventProtocol", "WriteFlow", "set_nodelay"]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: a proxy writes whole messages and must not wait for the peer's ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


HIGH_WATER: Final = 64  # queued events before we stop reading
LOW_WATER: Final = 16


class Codec(Protocol):
    def receive_data(self, data: bytes) -> list[Any]: ...
    def data_to_send(self) -> bytes: ...


C = TypeVar("C", bound=Codec)


class WriteFlow:
    """Tracks the transport's write buffer state for :meth:`EventProtocol.drain`."""

    __slots__ = ("_loop", "_paused", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def wait(self) -> None:
        if self._paused:
            w = self._loop.create_future()
            self._waiters.append(w)
            await w


class EventProtocol(asyncio.Protocol, Generic[C]):
    """A connection whose codec events are consumed by one coroutine."""

    transport: asyncio.Transport | None

    def __init__(self, codec: C) -> None:
        self.codec = codec
        self.transport = None
        self.closed = False
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        # Python 3.11's get_running_loop() makes a getpid() syscall on every call; the
        # hot path uses this cached loop instead.
        self.loop = asyncio.get_running_loop()
        self.closed_event: asyncio.Future[None] = self.loop.create_future()
        self._flow = WriteFlow(self.loop)

    # -- asyncio.Protocol callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        set_nodelay(self.transport)

    def data_received(self, data: bytes) -> None:
        self._push(self.codec.receive_data(data))

    def eof_received(self) -> bool | None:
        self._push(self.codec.receive_data(b""))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self._push(self.codec.receive_data(b""))
            self._flow.resume()
            if not self.closed_event.done():
                self.closed_event.set_result(None)
            self._wake()

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # -- consumer side ------------------------------------------------------------------------

    def _push(self, events: list[Event]) -> None:
        if not events:
            return
        self._events.extend(events)
        self._wake()
        if len(self._events) > HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def next_event(self) -> Event | None:
        """The next event, or ``None`` once the connection is closed and drained."""
        while not self._events:
            if self.closed:
                return None
            self._waiter = w = self.loop.create_future()
            try:
                await w
            finally:
                if self._waiter is w:
                    self._waiter = None
        ev = self._events.popleft()
        if self._reading_paused and len(self._events) < LOW_WATER and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return ev

    def pending_events(self) -> int:
        return len(self._events)

    # -- writing ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write whatever the codec has framed."""
        data = self.codec.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        await self._flow.wait()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def peername(self) -> tuple[str, int]:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return (str(peer[0]), int(peer[1])) if peer else ("", 0)

    @property
    def sockname(self) -> tuple[str, int]:
        name = self.transport.get_extra_info("sockname") if self.transport else None
        return (str(name[0]), int(name[1])) if name else ("", 0)
