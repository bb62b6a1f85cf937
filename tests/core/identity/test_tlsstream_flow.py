"""``TlsStream`` flow control and reads into an app's own buffer, on loopback.

A 64 MiB upload to an app that pauses reading and a 64 MiB download to a client that
reads slowly must follow the peer's pace instead of buffering (the process's RSS is
sampled during the transfer); an app whose buffer is smaller than a record gets each
record in pieces. Each test runs on uvloop and on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import pytest

from tests.support.pki import Authority

from ._tls_peer import LOOPS, App, Peer, Server, client_ctx, in_thread, run


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
