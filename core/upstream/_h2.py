"""HTTP/2 upstream connections: many streams multiplexed on few connections.

One :class:`H2Pool` per endpoint. :meth:`H2Pool.open_stream` picks a live
connection that can open another stream (below the peer's
``MAX_CONCURRENT_STREAMS``, no GOAWAY received), else connects a new one;
concurrent callers share one in-progress connect instead of racing. A
connection with no open streams for ``idle_timeout`` is closed by a lazy loop
timer (one per connection, re-armed only when it fires). With an
:class:`~._tls.Origination` the pool connects over mTLS offering ALPN ``h2``
(``_tls.py``); a connection made in plaintext before the sidecar had an identity, or
with a certificate it has since replaced (a rotation), takes no new streams and closes
when its streams are done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from plait.sdk import RequestHead, UpstreamConnectError

from .._h2mux import H2Mux, StreamQueue
from ..codec import ConnectionTerminated, Event, FlowControlUpdated, SidecarH2Codec, StreamReset
from ..config._model import Endpoint
from ._tls import Origination, connect

__all__ = ["H2Pool", "H2Stream"]

log = logging.getLogger(__name__)


class H2Stream(StreamQueue):
    """One request/response exchange on a multiplexed connection."""

    __slots__ = ("_done", "_noted", "reused", "watcher")

    def __init__(self, conn: _H2Client, reused: bool) -> None:
        super().__init__(conn, 0)
        self.reused = reused
        self._done = False
        self.watcher: Callable[[], None] | None = None
        self._noted = False

    def push(self, ev: Event) -> None:
        if self.watcher is None:
            super().push(ev)
            return
        self._events.append(ev)
        if not self._noted:  # the watcher hears it once the read is dispatched
            self._noted = True
            mux = self.mux
            assert isinstance(mux, _H2Client)
            mux.noted.append(self)

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (instead of waking a reader) after each read that brought
        the stream events, and when the connection closes; ``None`` stops watching."""
        self.watcher = callback

    @property
    def closed(self) -> bool:
        return self.mux.closed

    def consumed(self, n: int) -> None:
        """A watcher took ``n`` bytes of body from :attr:`events`: open the window."""
        if n and not self.mux.closed:
            self.mux.codec.acknowledge_received_data(self.stream_id, n)
            self.mux.flush()

    def send_head(
        self, head: RequestHead, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None:
        mux = self.mux
        sid = mux.codec.send_request(head, end_stream=end_stream and not body)
        self.stream_id = sid
        mux.queues[sid] = self
        if body:
            mux.codec.send_data(sid, body, end_stream=end_stream)
        mux.flush()

    def finish(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        self.watcher = None
        mux = self.mux
        mux.queues.pop(self.stream_id, None)
        if not complete and not mux.closed and self.stream_id:
            mux.codec.reset_stream(self.stream_id)
            mux.flush()
        assert isinstance(mux, _H2Client)
        mux.stream_done()

    def reset(self) -> None:
        self.finish(False)


class _H2Client(H2Mux):
    def __init__(self, pool: H2Pool) -> None:
        super().__init__(SidecarH2Codec(client_side=True))
        self.pool = pool
        self.served = 0
        self.goaway = False
        self.made = -1
        """The certificate generation of its handshake (``-1``: plaintext)."""
        self._loop = asyncio.get_running_loop()
        self._last_used = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.noted: list[H2Stream] = []
        """Watched streams that got events in the read being dispatched."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.codec.initiate()
        self.flush()
        self._timer = self._loop.call_later(self.pool.idle_timeout, self._on_idle_timer)

    def data_received(self, data: bytes) -> None:
        for ev in self.codec.receive_data(data):
            t = type(ev)
            if t is FlowControlUpdated:
                self.wake_windows()
            elif t is ConnectionTerminated:
                assert isinstance(ev, ConnectionTerminated)
                self._goaway(ev.last_stream_id)
            else:
                q = self.queues.get(getattr(ev, "stream_id", -1))
                if q is not None:
                    q.push(ev)
        self.flush()
        if self.noted:
            self._tell_watchers()

    def _tell_watchers(self) -> None:
        noted, self.noted = self.noted, []
        for stream in noted:
            stream._noted = False
            if stream.watcher is not None:
                stream.watcher()

    def _goaway(self, last_stream_id: int | None) -> None:
        self.goaway = True
        for sid, q in list(self.queues.items()):
            if last_stream_id is None or sid > last_stream_id:
                q.push(StreamReset(stream_id=sid, remote=True))
        if not self.queues:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all()
        self._tell_watchers()
        if self._timer is not None:
            self._timer.cancel()
        self.pool.forget(self)

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway and bool(self.codec.can_open_stream)

    def new_stream(self) -> H2Stream:
        self.served += 1
        return H2Stream(self, reused=self.served > 1)

    def stream_done(self) -> None:
        self._last_used = self._loop.time()
        if self.goaway and not self.queues:
            self.close()

    def _on_idle_timer(self) -> None:
        if self.closed:
            return
        idle_for = self._loop.time() - self._last_used
        if not self.queues and idle_for >= self.pool.idle_timeout:
            self.close()
            return
        self._timer = self._loop.call_later(
            max(0.05, self.pool.idle_timeout - idle_for), self._on_idle_timer
        )


class H2Pool:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout: float,
        idle_timeout: float,
        origin: Origination | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.origin = origin
        self.key = endpoint.key
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._conns: list[_H2Client] = []
        self._connecting: asyncio.Future[_H2Client] | None = None

    def take(self) -> H2Stream | None:
        """A stream on a live connection with room, without waiting; else ``None``."""
        origin = self.origin
        for conn in self._conns:
            if origin is not None and not conn.goaway and origin.stale(conn.made):
                conn.goaway = True  # made before the identity or this certificate
                if not conn.queues:
                    conn.close()
                continue
            if conn.usable:
                return conn.new_stream()
        return None

    async def open_stream(self, *, fresh: bool = False) -> H2Stream:
        if not fresh:
            if (stream := self.take()) is not None:
                return stream
            if self._connecting is not None:
                conn = await asyncio.shield(self._connecting)
                if conn.usable:
                    return conn.new_stream()
        return (await self._connect()).new_stream()

    async def _connect(self) -> _H2Client:
        loop = asyncio.get_running_loop()
        self._connecting = fut = loop.create_future()
        try:
            conn, made = await connect(
                lambda: _H2Client(self), self.endpoint, self.connect_timeout, self.origin
            )
        except UpstreamConnectError as err:
            fut.set_exception(err)
            fut.exception()  # consumed here; waiters get it through shield
            raise
        finally:
            if self._connecting is fut:
                self._connecting = None
        conn.made = made
        self._conns.append(conn)
        fut.set_result(conn)
        return conn

    def forget(self, conn: _H2Client) -> None:
        if conn in self._conns:
            self._conns.remove(conn)

    def close(self) -> None:
        for conn in list(self._conns):
            conn.close()
        self._conns.clear()
