"""plait's own TLS protocol: the byte path of mTLS between sidecars.

Theory of operation. A :class:`TlsStream` sits between a TCP transport and a
connection protocol (the *app*): to the TCP transport it is the protocol, to the app
it is the transport. It holds an :class:`ssl.SSLObject` between two memory BIOs.

* **Handshake.** Every TCP read goes into the incoming BIO and ``do_handshake`` runs
  again; what it produced goes out. On success the app is given the connection
  (``connection_made``) and then ``waiter`` is woken; on failure (a refused
  certificate, EOF, a reset, the timeout) ``waiter`` gets the error and the
  connection is closed after the alert goes out. The app never sees a connection
  whose handshake failed.
* **Reading.** A TCP read is written to the incoming BIO and decrypted at once. The
  loop asks ``SSLObject.read`` for as many bytes as are still encrypted (plaintext is
  never longer than its record), at most one record's worth (:data:`READ_SIZE`), so
  one read returns a whole record in one exact ``bytes``, and it stops when the
  incoming BIO is empty: the ``SSLWantReadError`` that ``read`` raises on an empty BIO
  (an exception per read is most of the cost of a small record) is raised only for a
  partial record or a record without application data (a session ticket). The SSL
  object can hold decrypted bytes only when a read filled its buffer; only then is it
  asked (``pending``, which releases the GIL like every call into OpenSSL). Records
  read in one go reach the app one ``data_received`` each (or, for an app that reads
  into a buffer of its own, straight into its buffer). ``read`` returning ``b""`` is the peer's
  ``close_notify``: the app's ``eof_received``, then our own ``close_notify`` and the
  close. Any other TLS error (a bad record, garbage, a refused renegotiation) sends
  its alert, closes the connection and reports the error to the app's
  ``connection_lost``; ``on_error`` (if set) is told too, for counting. The
  ``_ssl`` object's own methods are called, bound once, not ``SSLObject``'s
  interpreted wrappers.
* **Writing.** Each app ``write`` is one ``SSLObject.write`` (one record, or as many
  as 16 KiB records need) and one TCP ``write`` of what came out. Nothing is buffered
  here: the TCP transport's buffer is the only one, its ``pause_writing`` /
  ``resume_writing`` go straight to the app, and ``get_write_buffer_size`` is its.
* **Flow control of reads.** ``pause_reading`` pauses the TCP transport; what was
  already read stays encrypted in the incoming BIO (at most one TCP read) and is
  decrypted on ``resume_reading``, a loop callback later.
* **Closing.** ``close`` sends ``close_notify`` and closes the TCP transport once its
  buffer is written; ``abort`` drops it. A TCP EOF without ``close_notify``
  (a truncation) is not a clean end: the app gets ``connection_lost`` with a
  ``ConnectionResetError``, not ``eof_received``.

The app may hand the connection to another protocol (``set_protocol``: HTTP/2 chosen
by ALPN, a tunnel after ``101``); the next bytes go to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["READ_SIZE", "TlsStream"]

READ_SIZE: Final = 16 * 1024 + 1
"""The most plaintext one ``SSLObject.read`` is asked for: a record carries 16 KiB at
most, so a read of a whole record never fills its buffer, and the ``bytes`` it allocates
stays far below glibc's ``mmap`` threshold."""

_HANDSHAKE: Final = 0
_OPEN: Final = 1
_CLOSING: Final = 2
_CLOSED: Final = 3


class TlsStream(asyncio.Protocol):
    """One TLS connection; see the module docstring."""

    def __init__(
        self,
        app: Any,
        ctx: Any,
        *,
        server_side: bool,
        waiter: asyncio.Future[None] | None,
        timeout: float,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        if session is None:
            self.sslobj: ssl.SSLObject = ctx.wrap_bio(self.incoming, self.outgoing, server_side)
        else:
            self.sslobj = ctx.wrap_bio(self.incoming, self.outgoing, server_side, session=session)
        self.raw: Any = cast(Any, self.sslobj)._sslobj
        """``_ssl._SSLSocket``: what ``SSLObject``'s methods call, without their frames."""
        self.ssl_read: Callable[[int], bytes] = self.raw.read
        self.ssl_write: Callable[[Any], int] = self.raw.write
        self.bio_in: Callable[[bytes], int] = self.incoming.write
        self.bio_out: Callable[[], bytes] = self.outgoing.read
        self.held = False
        """The last read filled its buffer: the SSL object may hold more of its record."""
        self.app: Any = app
        self.buffered = False
        self.tcp: Any = None
        self.waiter = waiter
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.state = _HANDSHAKE
        self.reading_paused = False
        self.lost = False
        self.on_error: Callable[[BaseException], None] | None = None

    # -- the TCP transport's protocol --------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.tcp = transport
        self.timer = self.loop.call_later(self.timeout, self._handshake_timed_out)
        self._handshake()

    def data_received(self, data: bytes) -> None:
        self.bio_in(data)
        if self.state == _OPEN:
            self._decrypt()
        elif self.state == _HANDSHAKE:
            self._handshake()

    def eof_received(self) -> bool:
        if self.state == _HANDSHAKE:
            self._failed(ConnectionResetError("connection closed in the TLS handshake"))
        elif self.state == _OPEN:
            self._lose(ConnectionResetError("TLS connection closed without close_notify"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _HANDSHAKE:
            self._failed(exc or ConnectionResetError("connection lost in the TLS handshake"))
        self.state = _CLOSED
        self._lose(exc)

    def pause_writing(self) -> None:
        if self.state != _HANDSHAKE and not self.lost:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.state != _HANDSHAKE and not self.lost:
            self.app.resume_writing()

    # -- handshake -----------------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except Exception as exc:  # a refused certificate, a protocol error
            self._flush()  # the alert
            self._failed(exc)
            return
        self._flush()
        self.state = _OPEN
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._set_app(self.app)
        self.app.connection_made(self)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.waiter = None
        if self.state == _OPEN and (self.incoming.pending or self.raw.pending()):
            self._decrypt()  # the peer's first bytes came with its last handshake flight

    def _handshake_timed_out(self) -> None:
        self.timer = None
        if self.state == _HANDSHAKE:
            self._failed(ConnectionAbortedError(f"TLS handshake not done within {self.timeout}s"))

    def _failed(self, exc: BaseException) -> None:
        """The handshake failed: wake the waiter and close."""
        self.state = _CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.lost = True  # the app never had the connection
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.tcp is not None:
            self.tcp.close()

    # -- reading -------------------------------------------------------------------------------

    def _decrypt(self) -> None:
        incoming = self.incoming
        while not self.reading_paused and self.state == _OPEN:
            want = incoming.pending
            if self.held:  # the last read filled its buffer: the record may go on
                want += self.raw.pending()
            if want <= 0:
                break
            size = min(want, READ_SIZE)
            try:
                if self.buffered:
                    app = self.app
                    buf = app.get_buffer(size)
                    size = len(buf)
                    n: int = self.raw.read(size, buf)
                    self.held = n >= size
                    if n:
                        app.buffer_updated(n)
                        continue
                    data = b""
                else:
                    data = self.ssl_read(size)
                    self.held = len(data) >= size
            except ssl.SSLWantReadError:
                self.held = False
                break  # a partial record, or one without application data
            except Exception as exc:  # a bad record, garbage, a refused renegotiation
                self._fatal(exc)
                return
            if not data:
                self._peer_closed()
                return
            self.app.data_received(data)
        if self.outgoing.pending:
            self._flush()  # what reading produced: a key update, an alert

    def _peer_closed(self) -> None:
        """The peer's ``close_notify``: tell the app, answer with ours, close."""
        self.state = _CLOSING
        keep = self.app.eof_received()
        del keep  # a TLS connection cannot stay half open
        self._shutdown()

    def _fatal(self, exc: BaseException) -> None:
        self._flush()  # the alert
        if self.on_error is not None:
            self.on_error(exc)
        self.state = _CLOSED
        if self.tcp is not None:
            self.tcp.close()
        self._lose(exc)

    def _lose(self, exc: BaseException | None) -> None:
        if not self.lost and self.state != _HANDSHAKE:
            self.lost = True
            self.state = _CLOSED
            self.app.connection_lost(exc)

    # -- writing -------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.outgoing.pending and self.tcp is not None:
            self.tcp.write(self.bio_out())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.state != _OPEN or not data:
            return
        try:
            self.ssl_write(data)
        except Exception as exc:
            self._fatal(exc)
            return
        self.tcp.write(self.bio_out())

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _shutdown(self) -> None:
        self.state = _CLOSING
        with contextlib.suppress(ssl.SSLError):  # the peer's close_notify is not awaited
            self.sslobj.unwrap()
        self._flush()
        self.tcp.close()

    # -- the app's transport -------------------------------------------------------------------

    def close(self) -> None:
        if self.state == _OPEN:
            self._shutdown()
        elif self.tcp is not None and self.state != _CLOSED:
            self.tcp.close()

    def abort(self) -> None:
        self.state = _CLOSED if self.state != _HANDSHAKE else self.state
        if self.tcp is not None:
            self.tcp.abort()

    def is_closing(self) -> bool:
        return self.state != _OPEN or bool(self.tcp.is_closing())

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS connection cannot be half closed")

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.tcp.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.tcp.resume_reading()
            self.loop.call_soon(self._decrypt)

    def is_reading(self) -> bool:
        return not self.reading_paused and self.state == _OPEN

    def get_write_buffer_size(self) -> int:
        size: int = self.tcp.get_write_buffer_size()
        return size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self.tcp.get_write_buffer_limits()
        return limits

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.tcp.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: Any) -> None:
        self._set_app(protocol)

    def _set_app(self, protocol: Any) -> None:
        self.app = protocol
        self.buffered = hasattr(protocol, "get_buffer")

    def get_protocol(self) -> Any:
        return self.app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self.sslobj
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return sslobj.context
        if name == "peercert":
            return sslobj.getpeercert()
        if name == "cipher":
            return sslobj.cipher()
        if name == "compression":
            return sslobj.compression()
        if self.tcp is None:
            return default
        return self.tcp.get_extra_info(name, default)
