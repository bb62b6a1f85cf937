"""The API's connections on the event loop's own TLS: anyio byte streams over a Protocol.

Why: anyio's ``TLSStream`` runs TLS in Python over memory BIOs, with an exception, a
buffer copy and a loop round trip per read and per write. The event loop (uvloop when it
runs) does TLS in compiled code, so the API listens with ``loop.create_server(ssl=...)``
and gives each connection to the HTTP server (``_http.py``, unchanged) as an anyio
:class:`~anyio.abc.ByteStream`. Measured through the CA's certificate endpoint in
interleaved rounds, this saves the control plane ~0.1 ms of CPU per certificate on
keep-alive connections (~12 %); with a new connection per certificate the handshake
dominates and the difference is within the noise (docs/benchmarks.md).

Theory of operation: :func:`serve_sockets` serves the listener's bound sockets until
cancelled; every connection's task runs in its task group, started from the
Protocol's ``connection_made``. :class:`_Connection` is both the asyncio Protocol and
the stream: ``data_received`` appends to a buffer that :meth:`receive` hands out (reading
pauses above ``_HIGH_WATER`` buffered bytes until the server catches up), and
:meth:`send` writes to the transport and waits while the transport's own buffer is
above its high-water mark (``pause_writing``). :meth:`send` is a scheduling point, so a
client pipelining requests cannot keep the loop from other connections. A TLS handshake
that fails (plaintext, a client that does not trust the certificate) never becomes a
connection; the loop logs it only in debug mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["serve_sockets"]

_HIGH_WATER = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0

Handler = Callable[[anyio.abc.ByteStream], Coroutine[Any, Any, None]]


class _Connection(asyncio.Protocol, anyio.abc.ByteStream):
    def __init__(self, tg: anyio.abc.TaskGroup, handler: Handler) -> None:
        self._tg = tg
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._lost = False
        self._paused_reading = False
        self._tls = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self._tls = transport.get_extra_info("ssl_object") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tg.start_soon(self._handler, self)

    def data_received(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and self._transport is not None:
            self._transport.pause_reading()
            self._paused_reading = True
        _wake(self._readable)

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._readable)
        return not self._tls  # keep our side open for the response (TLS cannot half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self._writable)
        self._writable = None

    # -- anyio.abc.ByteStream ---------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._buffer:
            if self._eof:
                raise anyio.EndOfStream
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None
        data = self._buffer.popleft()
        if len(data) > max_bytes:
            self._buffer.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._paused_reading and self._buffered <= _HIGH_WATER // 2:
            self._paused_reading = False
            if self._transport is not None and not self._lost:
                self._transport.resume_reading()
        return data

    async def send(self, item: bytes) -> None:
        if self._lost or self._transport is None or self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._transport.write(item)
        while self._writable is not None and not self._lost:
            await asyncio.shield(self._writable)
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self._transport is None or self._tls:
            raise NotImplementedError("TLS has no half-close")
        with contextlib.suppress(OSError, RuntimeError):
            self._transport.write_eof()

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
        await anyio.lowlevel.checkpoint()


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


async def serve_sockets(
    sockets: Iterable[socket.socket], handler: Handler, ssl_context: ssl.SSLContext | None
) -> None:
    """Serve each bound, listening socket with ``handler`` per connection, until cancelled.

    The sockets stay the caller's (each is served through a duplicate of its descriptor).
    """
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    try:
        async with anyio.create_task_group() as tg:
            for sock in sockets:
                dup = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
                dup.setblocking(False)
                timeout = _HANDSHAKE_TIMEOUT if ssl_context is not None else None
                try:  # without start_serving this does not suspend: no cancellation inside
                    server = await loop.create_server(
                        lambda: _Connection(tg, handler),
                        sock=dup,
                        ssl=ssl_context,
                        ssl_handshake_timeout=timeout,
                        start_serving=False,
                    )
                except BaseException:
                    dup.close()
                    raise
                servers.append(server)
                await server.start_serving()
            await anyio.sleep_forever()
    finally:
        for each in servers:
            each.close()
