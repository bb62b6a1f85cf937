"""A downstream HTTP/2 connection: one task per stream, in the connection's task group.

Reached from :class:`~plait.core.server._h1.H1Connection` when a client sends
the HTTP/2 preface on a plaintext port (h2c prior knowledge) or negotiates
``h2`` by ALPN. Each request stream runs :func:`~plait.core.exchange.driver.serve` in
a task; the connection's task owns them all and ends when the socket closes.
Drain sends GOAWAY, lets open streams finish and closes once none are left.

Invariants:

* A stream's event queue exists from the moment its ``RequestReceived`` is
  dispatched, whether or not a task runs it yet: the preface, HEADERS and DATA
  often arrive in one read, before the connection's own task has started, and
  every event of the stream must reach its queue.
* A stream the client resets before a task took it up is dropped unseen (a
  reset in the same read as the request never reaches the upstream); one it
  resets later has its task's work cancelled (the upstream request is aborted,
  ``on_stream_complete`` and the access-log line still follow), as a client
  that closes an HTTP/1.1 connection mid-request.
* Tasks are started only for streams waiting with no idle or starting task to
  take them: a read that opens many streams starts at most that many tasks.
* A whole request runs inline (``driver.Inline``): in this read's callback until
  its first action that must wait, as a whole HTTP/1.1 request does; a reset or
  the connection's end cancels it like a task's stream. Whole means it ended with
  its HEADERS, or its small body (``exchange/gather.py``) ended in the same read
  without trailers (a gRPC unary call usually does): those streams are decided once
  the read's events are dispatched, the body's DATA acknowledged to the client as
  a reader's would be. Other requests with a body go to the stream tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

import anyio
from anyio.abc import TaskGroup

from plait.sdk import ConnectionContext, ResponseHead

from .._h2mux import H2Mux, StreamQueue
from ..codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlUpdated,
    RequestReceived,
    SidecarH2Codec,
    StreamReset,
)
from ..exchange.driver import Inline, serve
from ..exchange.gather import message_end, take_body

if TYPE_CHECKING:
    from ._listener import Listener

__all__ = ["H2Connection"]

log = logging.getLogger(__name__)
_MAX_IDLE = 32


class _Stream(StreamQueue):
    """The Downstream side of one HTTP/2 stream."""

    __slots__ = ("closing", "conn_ctx", "inline", "request", "response_started", "scope")

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        super().__init__(conn, stream_id)
        self.conn_ctx = conn.conn_ctx
        self.response_started = False
        self.closing = False
        self.request: RequestReceived | None = None  # until a task takes the stream up
        self.scope: anyio.CancelScope | None = None  # its worker's, while one runs it
        self.inline: Inline | None = None  # its exchange, while one runs inline

    @property
    def conn(self) -> H2Connection:
        return cast(H2Connection, self.mux)

    @property
    def listener(self) -> Listener:
        return self.conn.listener

    def end_inline(self, inline: Inline) -> None:
        if self.inline is inline:
            self.inline = None
            self.conn.forget(self)

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        self.response_started = True
        mux = self.mux
        mux.codec.send_response(self.stream_id, head, end_stream=end_stream and not body)
        if body:
            mux.codec.send_data(self.stream_id, body, end_stream=end_stream)
        mux.flush()

    def send_informational(self, head: ResponseHead) -> None:
        self.mux.codec.send_informational(self.stream_id, head)
        self.mux.flush()

    def reset(self) -> None:
        if not self.mux.closed:
            self.mux.codec.reset_stream(self.stream_id)
            self.mux.flush()


class H2Connection(H2Mux):
    """One downstream HTTP/2 connection.

    Args:
        listener: the listener that accepted it.
        conn_ctx: the connection's facts (addresses, TLS, ALPN).
        replaces: the protocol object that accepted the connection and handed it
            over (h2c preface on an HTTP/1.1 port): it takes that one's place in
            the listener's accounting instead of counting a second connection.
    """

    def __init__(
        self, listener: Listener, conn_ctx: ConnectionContext, replaces: object = None
    ) -> None:
        super().__init__(SidecarH2Codec(client_side=False))
        self.listener = listener
        self.conn_ctx = conn_ctx
        self._replaces = replaces
        self.tg: TaskGroup | None = None
        self._pending: deque[_Stream] = deque()
        self._fresh: list[_Stream] = []  # streams with a body opened in the read being dispatched
        self._idle: list[asyncio.Future[None]] = []
        self._claimed = 0  # tasks woken or started that have not taken a stream yet
        self._done = asyncio.get_running_loop().create_future()
        self.in_flight = False
        self.closing = False
        self._scope: anyio.CancelScope | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.codec.initiate()
        self.flush()
        if self._replaces is None:
            self.listener.connection_opened(self)
        else:
            self.listener.connection_handed_over(self._replaces, self)
            self._replaces = None
        self.listener.tg.start_soon(self.serve)

    def data_received(self, data: bytes) -> None:
        for ev in self.codec.receive_data(data):
            self._dispatch(ev)
        if self._fresh:
            self._take_fresh()
        self.flush()

    def _dispatch(self, ev: Event) -> None:
        t = type(ev)
        if t is RequestReceived:
            assert isinstance(ev, RequestReceived)
            self._start(ev)
        elif t is StreamReset:
            assert isinstance(ev, StreamReset)
            q = self.queues.get(ev.stream_id)
            if isinstance(q, _Stream):
                if q.inline is not None:
                    q.push(ev)
                    q.inline.cancel()
                elif q.request is not None:  # no task took it up yet
                    q.request = None
                    self.forget(q)
                else:
                    q.push(ev)
                    if q.scope is not None:
                        q.scope.cancel()
        elif t is FlowControlUpdated:
            self.wake_windows()
        elif t is ConnectionTerminated:
            assert isinstance(ev, ConnectionTerminated)
            if ev.error_code:  # a protocol error: the codec has reset every stream already
                if self.codec.error_reason is not None:  # ours, not the client's GOAWAY
                    self.listener.runtime.stats.http2_error(self.codec.error_reason)
                self.fail_all()
                self.close()
            else:  # the client's graceful GOAWAY (or EOF): finish what is open, then close
                self.closing = True
                if not self.queues:
                    self.close()
        else:
            sid = getattr(ev, "stream_id", None)
            q = self.queues.get(sid) if sid is not None else None
            if q is not None:
                q.push(ev)

    def _start(self, ev: RequestReceived) -> None:
        """Register a new stream's queue now, and have a stream task take it up.

        Starting an anyio task per stream was ~8% of the proxy's samples (py-spy) at
        100 concurrent streams; tasks are reused instead (all still owned by this connection's
        task group), and at most ``_MAX_IDLE`` wait for work at a time.
        """
        stream = _Stream(self, ev.stream_id)
        self.queues[ev.stream_id] = stream
        self.in_flight = True
        if ev.end_stream and (lrt := self.listener.runtime.listener(self.listener.name)):
            stream.inline = inline = Inline(stream, lrt, ev)
            inline.start()
            return
        stream.request = ev
        if not ev.end_stream:
            self._fresh.append(stream)  # its body may be whole by the end of this read
            return
        self._pending.append(stream)
        if self.tg is not None:
            self._wake_workers()

    def _take_fresh(self) -> None:
        """Streams opened in this read with a body: one whose small body also ended in
        this read runs inline as a whole request; the others go to the stream tasks."""
        fresh, self._fresh = self._fresh, []
        lrt = self.listener.runtime.listener(self.listener.name)
        for stream in fresh:
            ev = stream.request
            if ev is None:
                continue  # reset by the client in this read
            events = stream.events
            if lrt is not None and not self.closed:
                end = message_end(events, 0, 0)
                if end >= 0 and type(events[end]) is DataReceived:  # (not with trailers)
                    body = take_body(events, end, b"")[0]
                    if body:
                        self.codec.acknowledge_received_data(stream.stream_id, len(body))
                    stream.request = None
                    whole = RequestReceived(ev.stream_id, ev.head, True, body)
                    stream.inline = inline = Inline(stream, lrt, whole)
                    inline.start()
                    continue
            self._pending.append(stream)
        if self.tg is not None and self._pending:
            self._wake_workers()

    def _wake_workers(self) -> None:
        assert self.tg is not None
        while self._claimed < len(self._pending):
            self._claimed += 1
            if self._idle:
                waiter = self._idle.pop()
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self.tg.start_soon(self._stream_worker)

    async def _stream_worker(self) -> None:
        """Run waiting streams one after another, then wait idle for more.

        The worker's cancel scope serves each stream it runs: a client reset cancels it,
        which ends that stream's work and this worker (a cancelled scope cannot be used
        again; a replacement starts if streams are waiting). One scope per worker instead
        of one per stream: entering a scope costs ~3 µs, resets are rare.
        """
        self._claimed -= 1
        try:
            with anyio.CancelScope() as scope:
                await self._serve_streams(scope)
        finally:
            if self.tg is not None and not self.closed and self._pending:
                self._wake_workers()

    async def _serve_streams(self, scope: anyio.CancelScope) -> None:
        while True:
            while self._pending:
                stream = self._pending.popleft()
                ev, stream.request = stream.request, None
                if ev is not None:  # else reset by the client before it started
                    stream.scope = scope
                    await self._run_stream(stream, ev)
                    if scope.cancel_called:  # a reset that came as the stream ended
                        return  # must not cancel the next stream

            if len(self._idle) >= _MAX_IDLE or self.closed:
                return
            waiter = self.loop.create_future()
            self._idle.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._idle:
                    self._idle.remove(waiter)
                else:
                    self._claimed -= 1

    async def _run_stream(self, stream: _Stream, ev: RequestReceived) -> None:
        try:
            lrt = self.listener.runtime.listener(self.listener.name)
            if lrt is None:
                stream.reset()
                return
            await serve(lrt, stream, ev)
        finally:
            stream.scope = None
            self.forget(stream)

    def forget(self, stream: _Stream) -> None:
        """The stream's work is over: the connection closes once none is left, if closing."""
        self.queues.pop(stream.stream_id, None)
        self.in_flight = bool(self.queues)
        if self.closing and not self.queues:
            self.close()

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self._scope = tg.cancel_scope
                self._wake_workers()  # streams that arrived with the preface
                await self._done
                tg.cancel_scope.cancel()
        finally:
            self.close()

    def begin_drain(self) -> None:
        """Send GOAWAY: no new streams; close once the open ones finish."""
        self.closing = True
        if not self.closed:
            self.codec.close(0)
            self.flush()
        if not self.queues:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all()
        for q in list(self.queues.values()):
            q.push(StreamReset(stream_id=q.stream_id, remote=True))
            if isinstance(q, _Stream) and q.inline is not None:
                q.inline.cancel()
        if not self._done.done():
            self._done.set_result(None)
        if self._scope is not None:
            self._scope.cancel()
        self.listener.connection_closed(self)
