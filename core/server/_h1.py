"""A downstream HTTP/1.1 connection (and the switch to HTTP/2 on a client preface).

Theory of operation: the listener's protocol factory makes one
:class:`H1Connection` per accepted socket. The first bytes decide the
protocol: an HTTP/2 connection preface (h2c prior knowledge) hands the socket
to :class:`~plait.core.server._h2.H2Connection`; anything else starts
:meth:`H1Connection.serve` in the listener's task group. ``serve`` takes one
request at a time (pipelined requests wait their turn in the event queue),
runs :func:`~plait.core.exchange.driver.serve`, and loops while keep-alive holds.
A whole request on an idle connection is instead started in ``data_received``
(:class:`~plait.core.exchange.driver.Inline`): the same exchange machine, driven
from callbacks for as long as it needs no task.

Timeouts without per-request timer churn: one loop timer per connection
checks (a) a request head that started arriving but is not complete after
``request_headers`` seconds → 408 and close, and (b) no activity for ``idle``
seconds → close. The connection's anyio cancel scope is cancelled when the
socket is lost, so an exchange waiting on the upstream for a client that left
is cancelled, and its ``finally`` still runs ``on_stream_complete``.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

import anyio

from plait.sdk import ConnectionContext, Headers, ResponseHead

from .._transport import EventProtocol
from ..codec import (
    DataReceived,
    Event,
    H1ServerCodec,
    ProtocolFailed,
    RequestReceived,
    StreamReset,
    TrailersReceived,
    is_h2_preface,
)
from ..exchange.driver import Inline, serve

if TYPE_CHECKING:
    from ._listener import Listener

__all__ = ["H1Connection"]

log = logging.getLogger(__name__)


class H1Connection(EventProtocol[H1ServerCodec]):
    def __init__(self, listener: Listener) -> None:
        super().__init__(H1ServerCodec(max_header_bytes=listener.max_header_bytes))
        self.listener = listener
        self._runtime = listener.runtime  # read per request: the listener is interpreted
        self._name = listener.name
        self.conn_ctx: ConnectionContext = ConnectionContext(
            peer_address=("", 0), local_address=("", 0)
        )
        self.response_started = False
        self.closing = False
        self.in_flight = False
        self._req_done = True
        self._upgrade_pending = False
        self._stream_id = 0
        self._scope: anyio.CancelScope | None = None
        self._sniffing = listener.sniff_h2
        self._started = False
        self._loop = self.loop
        self._last_activity = self._loop.time()
        self._head_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._inline_ex: Inline | None = None
        """The inline (callback-driven or promoted) exchange in flight; ``serve`` waits."""
        self._stop = False
        """An inline exchange ended the connection: ``serve`` takes no further request."""

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        self.conn_ctx = ConnectionContext(
            peer_address=self.peername,
            local_address=self.sockname,
            listener=self.listener.name,
            tls=tls is not None,
            alpn=alpn,
            sni=getattr(tls, "server_hostname", None) if tls is not None else None,
            peer_identity=self.listener.peer_identity(tls) if tls is not None else None,
        )
        if alpn == "h2":  # negotiated by ALPN: no preface sniffing needed
            self._sniffing = False
            self._switch_to_h2(b"", registered=False)
            return
        self.listener.connection_opened(self)
        self._arm_timer(self.listener.timeouts.request_headers)

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._sniffing:
            data = self._held(data)
            h2 = is_h2_preface(data)
            if h2 is None:  # a strict prefix of the HTTP/2 preface: wait for more
                return self._hold(data)
            self._sniffing = False
            if h2:
                self._switch_to_h2(data)
                return None
        events = self.codec.receive_data(data)
        if events and type(ev := events[0]) is RequestReceived and self._start_inline(ev):
            del events[0]
        self._push(events)
        if not self._started:
            self._started = True
            self.listener.tg.start_soon(self.serve)
        if self._head_since is None and self.codec.head_in_progress:
            self._head_since = self._last_activity
        return None

    def eof_received(self) -> bool | None:
        super().eof_received()
        # Half-close, to still answer the request in flight: only where the transport can
        # (TCP). A TLS transport cannot; asyncio closes it whatever this returns, and warns
        # when it is asked to keep it open.
        transport = self.transport
        return transport is not None and transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
        if self._scope is not None:
            self._scope.cancel()
        if self._inline_ex is not None:
            self._inline_ex.cancel()
        if not was_closed:
            self.listener.connection_closed(self)

    # -- h2c prior-knowledge switch ----------------------------------------------------------

    _held_bytes = b""

    def _hold(self, data: bytes) -> None:
        self._held_bytes += data

    def _held(self, data: bytes) -> bytes:
        if self._held_bytes:
            data, self._held_bytes = self._held_bytes + data, b""
        return data

    def _switch_to_h2(self, data: bytes, *, registered: bool = True) -> None:
        from ._h2 import H2Connection

        assert self.transport is not None
        if self._timer is not None:
            self._timer.cancel()
        h2 = H2Connection(self.listener, self.conn_ctx, replaces=self if registered else None)
        self.closed = True
        self.transport.set_protocol(h2)
        h2.connection_made(self.transport)
        if data:
            h2.data_received(data)

    # -- timers ----------------------------------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        if self.closed:
            return
        t = self.listener.timeouts
        now = self._loop.time()
        if self._head_since is not None and self.codec.head_in_progress:
            if now - self._head_since >= t.request_headers:
                self._fail(408, "request headers not received in time", "request headers timeout")
                return
            self._arm_timer(self._head_since + t.request_headers - now)
            return
        self._head_since = None
        if not self.in_flight and now - self._last_activity >= t.idle:
            self.close()
            return
        deadline = self._last_activity + t.idle if not self.in_flight else now + t.idle
        self._arm_timer(max(0.05, min(deadline - now, t.request_headers)))

    # -- the request loop ------------------------------------------------------------------

    async def next_event(self) -> Event | None:
        """As :meth:`EventProtocol.next_event`, but held while an inline exchange is in
        flight (HTTP/1.1 answers in order), and ``None`` once one ended the connection."""
        while self._inline_ex is not None or not self._events:
            if self._stop or (self.closed and self._inline_ex is None):
                return None
            self._waiter = w = self.loop.create_future()
            try:
                await w
            finally:
                if self._waiter is w:
                    self._waiter = None
        if self._stop:
            return None
        return await super().next_event()

    def _start_inline(self, ev: RequestReceived) -> bool:
        """Start a whole request on an idle connection in this callback; ``False`` (nothing
        done) when the request loop must take it: the request streams or upgrades,
        requests are queued or in flight, or the listener is gone."""
        if (
            not ev.end_stream
            or ev.upgrade
            or self.in_flight
            or self._events
            or self.closing
            or self._stop
        ):
            return False
        lrt = self._runtime.listener(self._name)
        if lrt is None:
            return False
        self._begin(ev)
        self._inline_ex = inline = Inline(self, lrt, ev)
        inline.start()
        return True

    def _begin(self, ev: RequestReceived) -> None:
        """Per-request connection state, whichever driver runs the exchange."""
        self._head_since = None
        self.response_started = False
        self._req_done = ev.end_stream and not ev.upgrade  # a tunnel keeps reading
        self._upgrade_pending = ev.upgrade
        self._stream_id = ev.stream_id
        self.in_flight = True
        if self._runtime.draining:
            self.closing = True

    def end_inline(self, inline: Inline) -> None:
        """The inline exchange ended: close like :meth:`_one`'s caller would, or let
        ``serve`` take the queued events."""
        if self._inline_ex is not inline:
            return
        self._inline_ex = None
        self.in_flight = False
        self._last_activity = self._loop.time()
        if self.closing or self.closed or not self.codec.reusable:
            self._stop = True
            self.close()
        if self._events or self._stop:
            self._wake()

    async def serve(self) -> None:
        try:
            with anyio.CancelScope() as self._scope:
                if self.closed:
                    return
                while True:
                    ev = await self.next_event()
                    if ev is None:
                        break
                    if type(ev) is RequestReceived:
                        if not await self._one(ev):
                            break
                    elif type(ev) is ProtocolFailed:
                        self._fail(ev.status_hint, ev.message, _reason(ev.status_hint))
                        break
                    elif type(ev) in (DataReceived, TrailersReceived):
                        continue  # the rest of a body nobody reads (its request was answered)
                    else:
                        break
        finally:
            self._scope = None
            self.close()

    async def _one(self, ev: RequestReceived) -> bool:
        """Serve one request; whether the connection may carry another."""
        lrt = self._runtime.listener(self._name)
        if lrt is None:
            self.closing = True
            self._fail(503, "listener removed", "listener draining")
            return False
        self._begin(ev)
        try:
            await serve(lrt, self, ev)
        finally:
            self.in_flight = False
            self._last_activity = self._loop.time()
        return not (self.closing or self.closed or not self._req_done or not self.codec.reusable)

    # -- Downstream interface --------------------------------------------------------------

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        self.response_started = True
        if self.closing or self._runtime.draining:
            self.closing = True
            head.headers.set(b"connection", b"close")
        self.codec.send_response(head, end_stream=end_stream, body=body)
        self.flush()
        if self._upgrade_pending:
            # The codec held the bytes after an Upgrade head until the answer decided
            # what they are: tunnel bytes after a 101, else the next request.
            self._upgrade_pending = False
            self._push(self.codec.resume())

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        self.codec.send_data(data, end_stream=end_stream)
        self.flush()
        await self.drain()

    def send_trailers(self, trailers: Headers) -> None:
        self.codec.send_trailers(trailers)
        self.flush()

    def send_informational(self, head: ResponseHead) -> None:
        self.codec.send_informational(head)
        self.flush()

    def send_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def read_event(self) -> Event:
        if self._req_done:
            return StreamReset(stream_id=self._stream_id, remote=False)
        ev = await self.next_event()
        if ev is None:
            self._req_done = True
            return StreamReset(stream_id=self._stream_id, remote=True)
        if (type(ev) is DataReceived and ev.end_stream) or type(ev) in (
            TrailersReceived,
            StreamReset,
            ProtocolFailed,  # a broken body: nothing more of this request will come
        ):
            self._req_done = True
        return ev

    def reset(self) -> None:
        self.closing = True
        self.abort()

    # -- errors ----------------------------------------------------------------------------

    def _fail(self, status: int, message: str, reason: str) -> None:
        """Answer a protocol error ourselves and close (the codec is unusable now)."""
        body = f"{reason}\n".encode()
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        raw = (
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\nx-plait-reason: {reason}\r\n\r\n"
        ).encode() + body
        log.info(
            "%s: %s %s from %s", self.listener.name, status, message, self.conn_ctx.peer_address
        )
        runtime = self.listener.runtime
        if self.listener.config.request_metrics:
            runtime.stats.record(self.listener.name, status, 0.0, reason)
        if runtime.access_log is not None:
            runtime.access_log.log_rejected(self.listener.name, status, reason, self.conn_ctx)
        if self.transport is not None and not self.closed:
            self.transport.write(raw)
            self.transport.close()


def _reason(status: int) -> str:
    return {
        400: "bad request",
        408: "request headers timeout",
        413: "request body too large",
        431: "request headers too large",
        505: "http version not supported",
    }.get(status, "bad request")
