"""The shared TLS byte path (``tlsio``) over real TLS on loopback, on uvloop and asyncio.

A server made with ``create_server(ssl=...)`` puts each connection protocol behind a
:class:`ReadInto` reader, as the sidecar's listeners do; the client connects with
:func:`connect_tls`, as the upstream pools do. Each test runs on both loops: the
sidecar runs on uvloop, whose compiled SSL protocol drives the reader differently
from asyncio's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from typing import Any

import pytest
import uvloop

from plait.core.identity.tlsio import MAX_BUFFER, ReadInto, connect_tls, ssl_protocol_class
from tests.core.identity._tls_peer import CLIENT, LOOPS, SERVER, run, store
from tests.support.pki import Authority


class Sink(asyncio.Protocol):
    """Counts and hashes what it reads; answers ``DONE`` after ``expect`` bytes."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.got = 0
        self.hash = hashlib.sha256()
        self.chunks: list[int] = []
        self.transport: Any = None
        self.reader: Any = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.reader = self.transport.get_protocol()  # what the SSL protocol feeds
        self.got += len(data)
        self.chunks.append(len(data))
        self.hash.update(data)
        if self.got >= self.expect and not self.done.done():
            self.transport.write(b"DONE")
            self.done.set_result(None)


class Switcher(asyncio.Protocol):
    """Reads a line, then hands the connection (and the bytes after the line) to a Sink."""

    def __init__(self, successor: Sink) -> None:
        self.successor = successor
        self.transport: Any = None
        self.line = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.line += data
        if b"\n" in self.line:
            _, _, rest = self.line.partition(b"\n")
            self.transport.set_protocol(self.successor)
            self.successor.connection_made(self.transport)
            if rest:
                self.successor.data_received(rest)


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.answer = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def exchange(app: asyncio.Protocol, payload: bytes, ca: Authority) -> Any:
    """Serve ``app`` behind a reader, send ``payload`` to it; the server transport."""
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    def factory() -> asyncio.BaseProtocol:
        seen.append(app)
        return ReadInto(app)

    server_ctx = store(ca, SERVER).listener_context()
    srv = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.sockets[0].getsockname()[1]
    ctx = store(ca, CLIENT).client_context()
    client = await connect_tls(Client, "127.0.0.1", port, ctx, None, 5.0)
    assert isinstance(client, Client)
    client.transport.write(payload)
    assert await asyncio.wait_for(client.answer, 10) == b"DONE"
    client.transport.close()
    srv.close()
    return seen


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_body_arrives_whole_in_bounded_reads(loop: str) -> None:
    ca = Authority.create()
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> None:
        sink = Sink(len(payload))
        await exchange(sink, payload, ca)
        assert sink.got == len(payload)
        assert sink.hash.digest() == hashlib.sha256(payload).digest()
        assert max(sink.chunks) <= MAX_BUFFER

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_protocol_that_hands_the_connection_on_is_read_for_its_successor(loop: str) -> None:
    ca = Authority.create()
    body = os.urandom(200_000)

    async def main() -> None:
        sink = Sink(len(body))
        switcher = Switcher(sink)
        await exchange(switcher, b"SWITCH\n" + body, ca)
        assert sink.hash.digest() == hashlib.sha256(body).digest()
        assert isinstance(sink.reader, ReadInto) and sink.reader.app is sink

    run(loop, main)


def test_uvloop_runs_its_own_ssl_protocol() -> None:
    async def main() -> None:
        cls = ssl_protocol_class(asyncio.get_running_loop())
        assert cls.__module__ == "uvloop.loop"

    uvloop.run(main())
    asyncio.run(_asyncio_class())


async def _asyncio_class() -> None:
    cls = ssl_protocol_class(asyncio.get_running_loop())
    assert cls is asyncio.sslproto.SSLProtocol


@pytest.mark.parametrize("loop", LOOPS)
def test_a_refused_handshake_raises_and_leaves_no_connection(loop: str) -> None:
    ca, rogue = Authority.create(), Authority.create("rogue")

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        srv = await loop_.create_server(
            lambda: ReadInto(Sink(1)), "127.0.0.1", 0, ssl=store(ca, SERVER).listener_context()
        )
        port = srv.sockets[0].getsockname()[1]
        ctx = store(rogue, CLIENT).client_context()  # trusts only the rogue root
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_tls(Client, "127.0.0.1", port, ctx, None, 5.0)
        srv.close()

    run(loop, main)


class Reused(asyncio.Protocol):
    """Answers each message with whether its connection's handshake resumed a session."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(
            str(self.transport.get_extra_info("ssl_object").session_reused).encode()
        )


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_offered_the_previous_session_resumes_it(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        srv = await loop_.create_server(
            lambda: ReadInto(Reused()), "127.0.0.1", 0, ssl=store(ca, SERVER).listener_context()
        )
        port = srv.sockets[0].getsockname()[1]
        ctx = store(ca, CLIENT).client_context()
        answers, session = [], None
        for _ in range(3):
            client = await connect_tls(Client, "127.0.0.1", port, ctx, session, 5.0)
            assert isinstance(client, Client)
            client.transport.write(b"?")
            answers.append(await asyncio.wait_for(client.answer, 5))
            sslobj = client.transport.get_extra_info("ssl_object")
            session = sslobj.session  # TLS 1.3: holds the ticket once a record was read
            client.transport.close()
        srv.close()
        assert answers == [b"False", b"True", b"True"]

    run(loop, main)


class BufferedSink(asyncio.BufferedProtocol):
    """A protocol that reads into its own buffer; answers ``DONE`` after ``expect`` bytes."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.got = 0
        self.buf = bytearray(1024)
        self.transport: Any = None
        self.reader: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.reader = self.transport.get_protocol()
        self.got += nbytes
        if self.got >= self.expect:
            self.transport.write(b"DONE")


class Gate(asyncio.Protocol):
    """Hands the connection to ``app`` once TLS is up, as the mTLS gates do."""

    def __init__(self, app: asyncio.BaseProtocol) -> None:
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ReadInto.install(transport, self.app)


@pytest.mark.parametrize("loop", LOOPS)
def test_install_reads_for_a_plain_protocol_and_leaves_a_buffered_one_alone(loop: str) -> None:
    ca = Authority.create()

    async def main() -> None:
        plain, buffered = Sink(5000), BufferedSink(5000)
        for app in (plain, buffered):
            await exchange(Gate(app), os.urandom(5000), ca)
        assert isinstance(plain.reader, ReadInto) and plain.reader.app is plain
        assert buffered.reader is buffered
        assert plain.got == buffered.got == 5000

    run(loop, main)
