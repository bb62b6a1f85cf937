"""The TLS byte paths: mTLS between sidecars on plait's own protocol, TLS listeners on the loop's.

Theory of operation. A TLS connection is an SSL protocol (memory BIOs around an
:class:`ssl.SSLObject`) between the TCP transport and the connection protocol.

* **mTLS between sidecars** (inbound termination, outbound origination) runs on
  :class:`~plait.core.identity._tlsstream.TlsStream`, plait's own SSL protocol,
  compiled with the hot path: one ``SSLObject.read`` per record into one exact
  ``bytes``, no ``SSLWantReadError`` on a whole record, one ``SSLObject.write`` and one
  TCP ``write`` per app write, the TCP transport's buffer as the only write buffer
  (its module docstring has the details). The connection protocol is its app
  directly. :func:`connect_tls` dials with it; the inbound side builds it on the
  sniffed connection (``plait.core.server._mtls``).
* **A TLS listener with certificate files of its own** (``create_server(ssl=...)``)
  runs on the loop's SSL protocol (:func:`ssl_protocol_class`: uvloop's compiled one
  on uvloop, asyncio's elsewhere). Such a protocol hands a plain ``data_received``
  protocol a fresh ``bytes`` per read, for which it asks ``SSLObject.read`` for up to
  256 KiB: each read allocates 256 KiB (glibc serves that with ``mmap``, shrinks it
  with ``mremap`` and releases it with ``munmap``: three system calls and a page fault
  per read), whatever the size of the message. A *buffered* protocol is given the
  decrypted bytes in its own buffer instead. :class:`ReadInto` is that buffered
  protocol in front of a connection protocol: one buffer per connection, sized to what
  arrives (:data:`MAX_BUFFER` at most), copied into one exact ``bytes`` for the
  connection's ``data_received``. Everything else a transport calls is passed through.
  A connection protocol that hands the connection to another
  (``transport.set_protocol``: HTTP/2 chosen by ALPN, a tunnel after ``101``) replaces
  the reader; the reader notices after the call that did it (``connection_made`` or
  ``data_received``) and puts a new one in front of the new protocol.

:func:`hand_over` gives a connection whose handshake is verified to its connection
protocol, on either.

**Client sessions.** ``loop.create_connection(ssl=...)`` (asyncio's and uvloop's) takes
no :class:`ssl.SSLSession`, so a client could never resume one; :func:`connect_tls`
passes ``session`` to :meth:`ssl.SSLContext.wrap_bio`. The session must come from the
same context (``ssl`` refuses another's); the server decides whether it resumes
(``SSLObject.session_reused``).
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, Final

from ._tlsstream import TlsStream

__all__ = ["MAX_BUFFER", "ReadInto", "TlsStream", "connect_tls", "hand_over", "ssl_protocol_class"]

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


def hand_over(transport: asyncio.BaseTransport, app: asyncio.BaseProtocol) -> None:
    """Give a connection whose TLS is up to ``app``: a :class:`TlsStream` delivers
    exact ``bytes`` (or reads into ``app``'s own buffer) itself; the loop's SSL
    protocol gets a :class:`ReadInto` reader in front of ``app``."""
    if isinstance(transport, TlsStream):
        transport.set_protocol(app)
        app.connection_made(transport)
    else:
        ReadInto.install(transport, app)


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


async def connect_tls(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None,
    handshake_timeout: float,
) -> asyncio.BaseProtocol:
    """A TCP connection to ``host:port`` with TLS on :class:`TlsStream` offering
    ``session``: the protocol from ``factory``, once the handshake is complete (and its
    ``connection_made`` called).

    Raises what ``create_connection`` raises: ``OSError`` (refused, reset in the
    handshake), :class:`ssl.SSLError` (the handshake failed); cancelled, the
    connection is aborted.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    app = factory()
    tls = TlsStream(
        app, ctx, server_side=False, waiter=waiter, timeout=handshake_timeout, session=session
    )
    transport, _ = await loop.create_connection(lambda: tls, host, port)
    try:
        await waiter
    except BaseException:
        transport.abort()
        raise
    return app
