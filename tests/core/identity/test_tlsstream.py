"""plait's own TLS protocol (``TlsStream``) against hostile and awkward peers, on loopback.

The peer decides where records and TCP segments end: one byte per record and per
segment, hundreds of records in one segment, a record cut short, bytes that are not
TLS, a close without ``close_notify``, a TLS 1.2 renegotiation (``openssl s_client``).
Each test runs on uvloop (the sidecar's loop) and on asyncio's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import tempfile
import time

import pytest

from plait.core.identity.tlsio import TlsStream
from tests.support.pki import Authority

from ._tls_peer import (
    CLIENT,
    LOOPS,
    SERVER,
    App,
    Peer,
    Server,
    client_ctx,
    exceptions_of,
    in_thread,
    run,
    store,
)

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


@pytest.mark.parametrize("loop", LOOPS)
def test_a_tls_1_2_renegotiation_is_refused_counted_and_closed(loop: str) -> None:
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
