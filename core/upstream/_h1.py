"""HTTP/1.1 upstream connections and their keep-alive pool.

Theory of operation: one :class:`H1Pool` per upstream endpoint keeps idle
keep-alive connections (LIFO, so the warmest is reused first). An exchange
takes a connection with :meth:`H1Pool.open_stream`, which returns an
:class:`H1Stream` owning that connection until :meth:`H1Stream.finish`: the
connection goes back to the pool only when the response completed, the request
was fully sent, and both sides allow keep-alive; otherwise it is closed. An
idle connection is closed after ``idle_timeout``: the idle list is ordered by
release time (pushed at the end, reused from the end), and one timer per pool
(armed while it has idle connections) closes the expired ones from the front,
so a request costs no timer. A connection the peer closed while idle is noticed
(``closed``) and dropped when popped. With an :class:`~._tls.Origination` the pool
connects over mTLS (``_tls.py``) and drops idle connections it made in plaintext
before the sidecar had an identity, or with a certificate it has since replaced.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from plait.sdk import Headers, RequestHead

from .._transport import EventProtocol
from ..codec import Event, H1ClientCodec, StreamReset
from ..config._model import Endpoint
from ._tls import Origination, connect

__all__ = ["H1Pool", "H1Stream"]

log = logging.getLogger(__name__)


class _Conn(EventProtocol[H1ClientCodec]):
    idle_since = 0.0
    """When it went back to the pool (loop clock)."""
    reused = False
    made = -1
    """The certificate generation of its mTLS handshake (``-1``: plaintext)."""
    watcher: Callable[[], None] | None = None
    """Set by a callback-driven (inline) exchange instead of awaiting :meth:`next_event`:
    called on every wake-up (new events, or the connection closed)."""

    def _wake(self) -> None:
        if self.watcher is not None:
            self.watcher()
        else:
            super()._wake()


class H1Stream:
    """One request/response exchange on one pooled HTTP/1.1 connection."""

    __slots__ = ("_done", "conn", "pool", "reused", "sent_all")

    def __init__(self, pool: H1Pool, conn: _Conn, reused: bool) -> None:
        self.pool = pool
        self.conn = conn
        self.reused = reused
        self.sent_all = False
        self._done = False

    def send_head(
        self, head: RequestHead, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None:
        self.conn.codec.send_request(head, end_stream=end_stream, body=body, upgrade=upgrade)
        self.conn.flush()
        self.sent_all = end_stream

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        self.conn.codec.send_data(data, end_stream=end_stream)
        self.conn.flush()
        if end_stream:
            self.sent_all = True
        await self.conn.drain()

    def send_trailers(self, trailers: Headers) -> None:
        self.conn.codec.send_trailers(trailers)
        self.conn.flush()
        self.sent_all = True

    def send_raw(self, data: bytes) -> None:
        """Tunnel mode (after 101): write bytes as they are."""
        if self.conn.transport is not None and not self.conn.closed:
            self.conn.transport.write(data)

    async def read_event(self) -> Event:
        ev = await self.conn.next_event()
        return StreamReset(stream_id=1, remote=True) if ev is None else ev

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (instead of waking a reader) when events arrive or the
        connection closes; ``None`` stops watching."""
        self.conn.watcher = callback

    @property
    def events(self) -> deque[Event]:
        """The connection's queued events (a watcher consumes them itself)."""
        return self.conn._events

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def consumed(self, n: int) -> None:
        """A watcher took ``n`` bytes of body from :attr:`events` (no flow control)."""

    def finish(self, complete: bool) -> None:
        """Give the connection back (``complete``: the response ended cleanly)."""
        if self._done:
            return
        self._done = True
        self.conn.watcher = None
        codec = self.conn.codec
        if complete and self.sent_all and codec.keep_alive and codec.idle and not self.conn.closed:
            self.pool.release(self.conn)
        else:
            self.conn.abort() if not complete else self.conn.close()

    def reset(self) -> None:
        self.finish(False)


class H1Pool:
    """Keep-alive connections to one endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout: float,
        idle_timeout: float,
        max_idle: int,
        max_header_bytes: int = 60 * 1024,
        origin: Origination | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.origin = origin
        self.key = endpoint.key
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.max_header_bytes = max_header_bytes
        self._idle: list[_Conn] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self.active = 0
        self.closed = False

    async def open_stream(self, *, fresh: bool = False) -> H1Stream:
        """A stream on an idle connection, or on a new one (``fresh`` forces new).

        Raises:
            UpstreamConnectError: the endpoint refused, was unreachable, or did not
                accept within the connect timeout.
        """
        if not fresh and (stream := self.take()) is not None:
            return stream
        return H1Stream(self, await self._connect(), reused=False)

    def take(self) -> H1Stream | None:
        """A stream on a live idle connection, without waiting; ``None`` if there is none."""
        idle = self._idle
        origin = self.origin
        while idle:
            conn = idle.pop()
            if (
                conn.closed
                or conn.pending_events()
                or (origin is not None and origin.stale(conn.made))
            ):
                conn.abort()
                continue
            return H1Stream(self, conn, reused=True)
        return None

    async def _connect(self) -> _Conn:
        """Raises ``UpstreamConnectError`` (``_tls.connect``)."""
        proto, made = await connect(
            lambda: _Conn(H1ClientCodec(max_header_bytes=self.max_header_bytes)),
            self.endpoint,
            self.connect_timeout,
            self.origin,
        )
        proto.made = made
        return proto

    def release(self, conn: _Conn) -> None:
        if self.closed or len(self._idle) >= self.max_idle:
            conn.close()
            return
        loop = conn.loop
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.idle_timeout, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections idle for ``idle_timeout``; re-arm for the oldest left."""
        self._sweeper = None
        idle = self._idle
        now = loop.time()
        expired = 0
        while expired < len(idle) and now - idle[expired].idle_since >= self.idle_timeout:
            expired += 1
        if expired:
            for conn in idle[:expired]:
                conn.close()
            del idle[:expired]  # in place: take() holds no copy
        if idle:
            delay = idle[0].idle_since + self.idle_timeout - now
            self._sweeper = loop.call_later(delay, self._sweep, loop)

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
