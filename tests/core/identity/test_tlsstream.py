"""plait's own TLS protocol (``TlsStream``) against hostile and awkward peers, on loopback.

The server side is a ``TlsStream`` on each accepted connection, as the inbound mTLS
listener builds it; the peer is a blocking socket in a thread driving its own
:class:`ssl.SSLObject`, so a test decides where records and TCP segments end: one
byte per record and per segment, hundreds of records in one segment, a record cut
short, bytes that are not TLS, a close without ``close_notify``. Each test runs on
uvloop (the sidecar's loop) and on asyncio's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
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


REQUEST = b"GET /one-byte-at-a-time HTTP/1.1\r\nhost: server\r\n\r\n"


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_one_record_and_one_segment_per_byte_arrives_whole(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        async with Server(ca, len(REQUEST)) as srv:

            def client() -> bytes:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                wire = peer.records(REQUEST, 1)
                for i in range(len(wire)):
                    peer.sock.send(wire[i : i + 1])
                    time.sleep(0.0002)  # its own segment (TCP_NODELAY)
                answer = peer.read(4)
                peer.close()
                return answer

            answer = await in_thread(client)
            assert answer == b"OK %d" % len(REQUEST)
            assert bytes(srv.apps[0].data) == REQUEST

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_hundreds_of_records_in_one_segment_arrive_in_order(loop: str) -> None:
    ca = Authority.create()
    payload = os.urandom(37 * 500)

    async def main() -> None:
        async with Server(ca, len(payload)) as srv:

            def client() -> bytes:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                peer.sock.sendall(peer.records(payload, 37))  # 500 records in one send
                answer = peer.read(4)
                peer.close()
                return answer

            assert await in_thread(client) == b"OK %d" % len(payload)
            assert bytes(srv.apps[0].data) == payload

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_truncated_record_then_close_is_a_reset_not_an_eof(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        seen = exceptions_of(asyncio.get_running_loop())
        async with Server(ca) as srv:

            def client() -> None:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                whole = peer.records(b"first", 5)
                cut = peer.records(b"second record, cut short", 64)
                peer.sock.sendall(whole + cut[: len(cut) // 2])
                time.sleep(0.05)
                peer.close()  # FIN without close_notify

            await in_thread(client)
            app = srv.apps[0]
            await asyncio.wait_for(app.closed, 5)
            assert bytes(app.data) == b"first"
            assert not app.eof  # not a clean end
            assert len(app.lost) == 1 and isinstance(app.lost[0], ConnectionResetError)
        assert seen == []

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x17\x03\x03\x00\x20" + b"\x00" * 32],
    ids=["plaintext", "forged-record"],
)
def test_garbage_after_the_handshake_is_alerted_counted_and_closed(
    loop: str, garbage: bytes
) -> None:
    ca = Authority.create()

    async def main() -> None:
        seen = exceptions_of(asyncio.get_running_loop())
        async with Server(ca) as srv:

            def client() -> bytes:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                peer.sock.sendall(garbage)
                peer.sock.settimeout(5)
                got = b""
                while chunk := peer.sock.recv(4096):  # the alert, then EOF
                    got += chunk
                peer.close()
                return got

            reply = await in_thread(client)
            app = srv.apps[0]
            await asyncio.wait_for(app.closed, 5)
            assert reply[:1] == b"\x15" or reply[:1] == b"\x17"  # an alert (TLS 1.3: wrapped)
            assert app.data == b""
            assert len(srv.errors) == 1 and isinstance(srv.errors[0], ssl.SSLError)
            assert isinstance(app.lost[0], ssl.SSLError)
        assert seen == []

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_close_notify_is_an_eof_and_is_answered(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        async with Server(ca) as srv:

            def client() -> tuple[bytes, str]:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                peer.sock.sendall(peer.records(b"bye", 3))
                with contextlib.suppress(ssl.SSLWantReadError):
                    peer.obj.unwrap()
                peer.sock.sendall(peer.out.read())
                rest = peer.read(1)
                peer.close()
                return rest, peer.ended

            assert await in_thread(client) == (b"", "close_notify")
            app = srv.apps[0]
            await asyncio.wait_for(app.closed, 5)
            assert bytes(app.data) == b"bye" and app.eof and app.lost == [None]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_peers(loop: str, version: ssl.TLSVersion) -> None:
    ca = Authority.create()
    payload = os.urandom(100_000)

    async def main() -> None:
        async with Server(ca, len(payload)) as srv:

            def client() -> tuple[bytes, str | None]:
                peer = Peer(srv.port, client_ctx(ca, version))
                peer.handshake()
                peer.sock.sendall(peer.records(payload, 16384))
                answer = peer.read(4)
                peer.close()
                return answer, peer.obj.version()

            answer, got = await in_thread(client)
            assert answer == b"OK %d" % len(payload)
            assert hashlib.sha256(srv.apps[0].data).digest() == hashlib.sha256(payload).digest()
            server_obj = srv.streams[0].get_extra_info("ssl_object")
            assert (
                got
                == server_obj.version()
                == {
                    ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                    ssl.TLSVersion.TLSv1_3: "TLSv1.3",
                }[version]
            )

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_silent_client_times_the_handshake_out(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        ctx = store(ca, SERVER).listener_context()
        waiter: asyncio.Future[None] = loop_.create_future()
        app = App()
        srv = await loop_.create_server(
            lambda: TlsStream(app, ctx, server_side=True, waiter=waiter, timeout=0.3),
            "127.0.0.1",
            0,
        )
        sock = socket.create_connection(("127.0.0.1", srv.sockets[0].getsockname()[1]))
        with pytest.raises(ConnectionAbortedError):
            await asyncio.wait_for(waiter, 5)
        assert app.transport is None  # the app never saw the connection
        sock.close()
        srv.close()

    run(loop, main)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


BIG = 64 * 1024 * 1024
BLOCK = os.urandom(1024 * 1024)
BOUND = 24 * 1024 * 1024
"""What a 64 MiB transfer may add to the process's RSS: without flow control it would
be buffered whole (encrypted, then decrypted)."""


class SlowReader(App):
    """Pauses reading after every 256 KiB and resumes 2 ms later; hashes what it got."""

    def __init__(self) -> None:
        super().__init__(BIG)
        self.hash = hashlib.sha256()
        self.got = 0
        self.since = 0
        self.pauses = 0
        self.peak = 0
        self.largest = 0

    def data_received(self, data: bytes) -> None:
        self.largest = max(self.largest, len(data))
        self.hash.update(data)
        self.got += len(data)
        self.since += len(data)
        self.peak = max(self.peak, rss())
        if self.got >= BIG:
            self.transport.write(b"OK %d" % self.got)
        elif self.since >= 256 * 1024:
            self.since = 0
            self.pauses += 1
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(0.002, self.transport.resume_reading)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_upload_to_a_slow_reader_is_held_back_not_buffered(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        reader = SlowReader()
        async with Server(ca, make=lambda: reader) as srv:
            base = rss()

            def client() -> bytes:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                for _ in range(BIG // len(BLOCK)):
                    peer.sock.sendall(peer.records(BLOCK, 16384))
                answer = peer.read(4)
                peer.close()
                return answer

            answer = await in_thread(client)
            assert answer.startswith(b"OK %d" % BIG)
            assert reader.hash.digest() == hashlib.sha256(BLOCK * (BIG // len(BLOCK))).digest()
            assert reader.pauses > 100
            assert reader.largest <= 16384  # a record at a time: no 256 KiB reads
            assert reader.peak - base < BOUND, f"RSS grew {(reader.peak - base) >> 20} MiB"

    run(loop, main)


class Pump(App):
    """Writes ``BIG`` bytes as fast as the transport lets it: stops at ``pause_writing``,
    goes on at ``resume_writing``."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.paused = False
        self.pauses = 0
        self.peak = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pump()

    def pump(self) -> None:
        while not self.paused and self.sent < BIG:
            self.transport.write(BLOCK[: 64 * 1024])
            self.sent += 64 * 1024
            self.peak = max(self.peak, rss())

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_download_to_a_slow_client_follows_the_tcp_buffer(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        pump = Pump()
        async with Server(ca, make=lambda: pump) as srv:
            base = rss()

            def client() -> tuple[int, bytes]:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                digest, got = hashlib.sha256(), 0
                while got < BIG:
                    chunk = peer.read(1)
                    assert chunk, "closed early"
                    digest.update(chunk)
                    got += len(chunk)
                    time.sleep(0.0005)  # a slow reader
                peer.close()
                return got, digest.digest()

            got, digest = await in_thread(client)
            assert got == BIG
            assert digest == hashlib.sha256(BLOCK[: 64 * 1024] * (BIG // (64 * 1024))).digest()
            assert pump.pauses > 10
            assert pump.peak - base < BOUND, f"RSS grew {(pump.peak - base) >> 20} MiB"

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_tls_1_2_renegotiation_is_refused_counted_and_closed(loop: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (s_client renegotiates on 'R')")
    ca = Authority.create()

    async def main() -> None:
        seen = exceptions_of(asyncio.get_running_loop())
        async with Server(ca) as srv:
            with tempfile.TemporaryDirectory() as d:
                chain, key = ca.leaf(CLIENT)
                for name, data in (("c.pem", chain), ("k.pem", key), ("ca.pem", ca.pem)):
                    with open(os.path.join(d, name), "wb") as f:
                        f.write(data)
                proc = await asyncio.create_subprocess_exec(
                    *("openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-tls1_2"),
                    *("-cert", f"{d}/c.pem", "-key", f"{d}/k.pem", "-CAfile", f"{d}/ca.pem"),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                assert proc.stdin is not None and proc.stdout is not None
                while not srv.apps or srv.apps[0].transport is None:
                    await asyncio.sleep(0.02)
                proc.stdin.write(b"hello\n")
                while srv.apps[0].data != b"hello\n":
                    await asyncio.sleep(0.02)
                proc.stdin.write(b"R\n")  # s_client: renegotiate
                out = await asyncio.wait_for(proc.stdout.read(), 10)
                await proc.wait()
            app = srv.apps[0]
            await asyncio.wait_for(app.closed, 5)
            assert b"no renegotiation" in out.lower()
            assert bytes(app.data) == b"hello\n"
            assert len(srv.errors) == 1 and isinstance(srv.errors[0], ssl.SSLError)
        assert seen == []

    run(loop, main)


class SmallBuffer(asyncio.BufferedProtocol):
    """Reads into a buffer of 1000 bytes (smaller than a record); answers ``OK <n>``."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.buf = bytearray(1000)
        self.data = bytearray()
        self.reads = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1
        self.data += self.buf[:nbytes]
        if len(self.data) >= self.expect:
            self.transport.write(b"OK %d" % len(self.data))


@pytest.mark.parametrize("loop", LOOPS)
def test_an_app_with_a_small_buffer_of_its_own_gets_each_record_in_pieces(loop: str) -> None:
    """A record larger than the app's buffer is read in pieces straight into it: what the
    SSL object still holds after a full buffer is read on, not left behind."""
    ca = Authority.create()
    payload = os.urandom(50_000)

    async def main() -> None:
        app = SmallBuffer(len(payload))
        async with Server(ca, make=lambda: app) as srv:  # type: ignore[arg-type, return-value]

            def client() -> bytes:
                peer = Peer(srv.port, client_ctx(ca))
                peer.handshake()
                peer.sock.sendall(peer.records(payload, 16384))
                answer = peer.read(4)
                peer.close()
                return answer

            assert await in_thread(client) == b"OK %d" % len(payload)
            assert bytes(app.data) == payload
            assert app.reads >= len(payload) // 1000

    run(loop, main)
