"""The TLS byte path both mTLS directions share: which SSL protocol runs, and how it reads.

Theory of operation. A TLS connection is an SSL protocol (memory BIOs around an
:class:`ssl.SSLObject`) between the TCP transport and the connection protocol. Two
choices decide its per-request CPU cost, so both directions make them here:

* **Which SSL protocol.** On uvloop, uvloop's own compiled ``SSLProtocol``
  (:func:`ssl_protocol_class`), the one ``create_server(ssl=...)`` and
  ``create_connection(ssl=...)`` use; the TCP transport reads straight into its
  buffer. asyncio's :class:`asyncio.sslproto.SSLProtocol` does the same work in
  interpreted code; it runs only where the loop is asyncio's own.
* **How decrypted bytes reach the connection.** An SSL protocol hands a plain
  ``data_received`` protocol a fresh ``bytes`` per read, for which it asks
  ``SSLObject.read`` for up to 256 KiB: each read allocates 256 KiB (glibc serves that
  with ``mmap``, shrinks it with ``mremap`` and releases it with ``munmap``: three
  system calls and a page fault per read), whatever the size of the message. A
  *buffered* protocol is given the decrypted bytes in its own buffer instead.
  :class:`ReadInto` is that buffered protocol in front of a connection protocol: one
  buffer per connection, sized to what arrives (a small request needs a small one,
  :data:`MAX_BUFFER` at most), copied into one exact ``bytes`` for the connection's
  ``data_received``. Everything else a transport calls is passed through. A connection
  protocol that hands the connection to another (``transport.set_protocol``: HTTP/2
  chosen by ALPN, a tunnel after ``101``) replaces the reader; the reader notices after
  the call that did it (``connection_made`` or ``data_received``) and puts a new one in
  front of the new protocol.

**Client sessions.** ``loop.create_connection(ssl=...)`` (asyncio's and uvloop's) takes
no :class:`ssl.SSLSession`, so a client could never resume one. :func:`connect_tls`
does what it does -- a TCP connection whose protocol is the loop's SSL protocol, then
waits for the handshake -- but gives the SSL protocol a context that passes ``session``
to :meth:`ssl.SSLContext.wrap_bio` (:class:`_Offer`). The session must come from the
same context (``ssl`` refuses another's); the server decides whether it resumes
(``SSLObject.session_reused``).
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, Final

__all__ = ["MAX_BUFFER", "ReadInto", "connect_tls", "ssl_protocol_class"]

MAX_BUFFER: Final = 64 * 1024
"""The largest read buffer of a connection (four full TLS records)."""
_FIRST: Final = 4 * 1024

try:
    import uvloop.loop as _uv

    _UV_LOOP: type | None = _uv.Loop
    _UV_SSL_PROTOCOL: Any = _uv.SSLProtocol  # type: ignore[attr-defined]  # not in its stub
except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
    _UV_LOOP = _UV_SSL_PROTOCOL = None


def ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The SSL protocol class of ``loop``: uvloop's own on uvloop, else asyncio's.

    Both take ``(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
    ssl_handshake_timeout=...)``."""
    if _UV_LOOP is not None and isinstance(loop, _UV_LOOP):
        return _UV_SSL_PROTOCOL
    return sslproto.SSLProtocol


class ReadInto(asyncio.BufferedProtocol):
    """A connection protocol's reader on a TLS transport; see the module docstring."""

    __slots__ = ("app", "buf", "transport", "view")

    def __init__(self, app: asyncio.BaseProtocol) -> None:
        self.app: Any = app
        self.buf = bytearray(_FIRST)
        self.view = memoryview(self.buf)
        self.transport: Any = None

    @classmethod
    def install(cls, transport: asyncio.BaseTransport, app: asyncio.BaseProtocol) -> None:
        """Put ``app`` behind a reader on ``transport`` (unless it reads into a buffer of
        its own) and tell it it is connected."""
        if hasattr(app, "get_buffer"):
            transport.set_protocol(app)
            app.connection_made(transport)
            return
        reader = cls(app)
        transport.set_protocol(reader)
        reader.connection_made(transport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.app.connection_made(transport)
        self._follow()

    def _follow(self) -> None:
        """The app handed the connection on: read for its successor instead."""
        now = self.transport.get_protocol()
        if now is not self and now is not None and not hasattr(now, "get_buffer"):
            reader = ReadInto(now)
            reader.transport = self.transport
            self.transport.set_protocol(reader)

    def get_buffer(self, sizehint: int) -> memoryview:
        if sizehint > len(self.buf) and len(self.buf) < MAX_BUFFER:
            self.buf = bytearray(min(max(sizehint, 2 * len(self.buf)), MAX_BUFFER))
            self.view = memoryview(self.buf)
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.app.data_received(bytes(self.view[:nbytes]))
        if self.transport.get_protocol() is not self:
            self._follow()

    def eof_received(self) -> bool | None:
        result: bool | None = self.app.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()


class _Offer:
    """A client context that offers ``session`` in the handshake of the one connection
    it is given to (the SSL protocols call only ``wrap_bio``)."""

    __slots__ = ("ctx", "session")

    def __init__(self, ctx: ssl.SSLContext, session: ssl.SSLSession) -> None:
        self.ctx = ctx
        self.session = session

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> ssl.SSLObject:
        return self.ctx.wrap_bio(
            incoming, outgoing, server_side, server_hostname, session=self.session
        )


async def connect_tls(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None,
    handshake_timeout: float,
) -> asyncio.BaseProtocol:
    """``loop.create_connection(factory, host, port, ssl=ctx)`` offering ``session``:
    the protocol, once the handshake is complete (and its ``connection_made`` called).

    Raises what ``create_connection`` raises: ``OSError`` (refused, reset in the
    handshake), :class:`ssl.SSLError` (the handshake failed); cancelled, the
    connection is aborted.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    app = factory()
    tls = ssl_protocol_class(loop)(
        loop,
        app,
        ctx if session is None else _Offer(ctx, session),
        waiter,
        False,
        None,
        ssl_handshake_timeout=handshake_timeout,
    )
    transport, _ = await loop.create_connection(lambda: tls, host, port)
    try:
        await waiter
    except BaseException:
        transport.abort()
        raise
    return app
