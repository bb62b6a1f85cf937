"""Loopback TLS peers for the ``TlsStream`` tests.

:class:`Server` runs a ``TlsStream`` on each accepted connection, as the inbound mTLS
listener builds it, and hands it to an app once the handshake is done; :class:`Peer`
is a client over a blocking socket (run in a thread) driving its own
:class:`ssl.SSLObject`, so a test decides where records and TCP segments end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from plait.core.identity import CertStore
from plait.core.identity.tlsio import TlsStream, hand_over
from tests.support.pki import Authority

SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"
LOOPS = {"uvloop": uvloop.run, "asyncio": asyncio.run}


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    LOOPS[loop](main())


def store(ca: Authority, spiffe_id: str) -> CertStore:
    s = CertStore()
    chain, key = ca.leaf(spiffe_id)
    s.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    return s


class App(asyncio.Protocol):
    """Records what a TLS connection delivers; answers ``OK <n>`` once ``expect`` bytes came."""

    def __init__(self, expect: int = 0) -> None:
        self.expect = expect
        self.data = bytearray()
        self.transport: Any = None
        self.eof = False
        self.lost: list[BaseException | None] = []
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.data += data
        if self.expect and len(self.data) >= self.expect:
            self.transport.write(b"OK %d" % len(self.data))
            self.expect = 0

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.closed.done():
            self.closed.set_result(None)


class Server:
    """A loopback server that runs ``TlsStream`` on each connection and hands it to an app."""

    def __init__(
        self, ca: Authority, expect: int = 0, make: Callable[[], App] | None = None
    ) -> None:
        self.ctx = store(ca, SERVER).listener_context()
        self.make = make or (lambda: App(expect))
        self.apps: list[App] = []
        self.streams: list[TlsStream] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self.srv: Any = None

    def _accept(self) -> TlsStream:
        app = self.make()
        self.apps.append(app)

        class Gate(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                hand_over(transport, app)

        tls = TlsStream(Gate(), self.ctx, server_side=True, waiter=None, timeout=5.0)
        tls.on_error = self.errors.append
        self.streams.append(tls)
        return tls

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        self.srv = await loop.create_server(self._accept, "127.0.0.1", 0)
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.srv.close()


class Peer:
    """A TLS client over a blocking socket; the test chooses record and segment bounds."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out)
        self.ended = ""
        """How the server ended the connection, once read: ``close_notify`` or ``eof``."""

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                data = self.sock.recv(65536)
                assert data, "closed in the handshake"
                self.inc.write(data)
        self.sock.sendall(self.out.read())

    def records(self, data: bytes, size: int) -> bytes:
        """``data`` as TLS records of ``size`` plaintext bytes each."""
        for i in range(0, len(data), size):
            self.obj.write(data[i : i + size])
        return self.out.read()

    def read(self, n: int) -> bytes:
        """At least ``n`` plaintext bytes (fewer if the server closes)."""
        got = b""
        while len(got) < n:
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    self.ended = "close_notify"
                    return got
                got += chunk
                continue
            except ssl.SSLZeroReturnError:  # close_notify, after ours
                self.ended = "close_notify"
                return got
            except ssl.SSLWantReadError:
                pass
            data = self.sock.recv(65536)
            if not data:
                self.ended = "eof"
                return got
            self.inc.write(data)
        return got

    def close(self) -> None:
        self.sock.close()


def client_ctx(ca: Authority, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = store(ca, CLIENT).client_context()
    if version is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=ca.pem.decode())
        chain, key = ca.leaf(CLIENT)
        with tempfile.TemporaryDirectory() as d:
            c, k = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(c, "wb") as f:
                f.write(chain)
            with open(k, "wb") as f:
                f.write(key)
            ctx.load_cert_chain(c, k)
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def exceptions_of(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    """Everything the loop's exception handler is given (a logged traceback)."""
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    return seen
