"""Micro benchmark: CPU cost of the mTLS byte path between two sidecars, in one process.

Two sidecars of the real hot path, as :mod:`benchmarks.inline_bench` drives one: the
outbound sidecar's downstream :class:`~plait.core.server._h1.H1Connection` gets the
request bytes; its upstream pool connection is linked to the inbound sidecar's
``H1Connection`` by an in-memory wire (each ``write`` of one side is one "TCP read"
of the other, a loop callback later); the inbound sidecar's upstream connection is
answered with the response bytes. Between the two sidecars runs one of:

* ``plain``: the bytes as they are (the plaintext hop);
* ``tls``: mutual TLS as the sidecars run it between them: the certificate stores'
  contexts (TLS 1.3), the connection protocols on plait's own SSL protocol
  (:class:`~plait.core.identity._tlsstream.TlsStream`), handed over as the mTLS gates
  do (:func:`~plait.core.identity.tlsio.hand_over`);
* ``tls-loop``: the same on the loop's SSL protocol (uvloop's) with the connection
  protocol behind a ``ReadInto`` reader: the path of a listener with TLS files of its
  own, for comparison.

The handshake is done before the count. ``tls`` minus ``plain`` is what the TLS layer
costs per request, both sides (one decrypt and one encrypt each), without syscalls.
Prints a line if the sidecars wrote other than one TCP write per message. Run by hand::

    .venv/bin/python -m benchmarks.tls_hop_bench [plain | tls | tls-loop ...]   # N=20000
    PROFILE=1 N=5000 .venv/bin/python -m benchmarks.tls_hop_bench tls          # cProfile

For instructions per request, count two runs with callgrind and divide the difference::

    PYTHONHASHSEED=0 N=1000 valgrind --tool=callgrind \\
        .venv/bin/python -m benchmarks.tls_hop_bench tls
    (the same with N=6000; per request: (Ir(6000) - Ir(1000)) / 5000)
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

import anyio

from plait.core.codec import H1ClientCodec
from plait.core.identity import CertStore
from plait.core.identity._tlsstream import TlsStream
from plait.core.identity.tlsio import hand_over, ssl_protocol_class
from plait.core.server._h1 import H1Connection
from plait.core.upstream._h1 import H1Pool, _Conn
from tests.support.pki import Authority

from .exchange_bench import REQUEST, RESPONSE
from .inline_bench import _Listener, _runtime, _Transport

SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"


class _HopListener(_Listener):
    verified = None

    def peer_identity(self, tls: Any) -> None:
        return None


class _Wire(_Transport):
    """One direction of a TCP connection: what is written is read by ``peer`` (a
    protocol) one loop callback later, into its buffer if it has one."""

    def __init__(self, peer_addr: tuple[str, int]) -> None:
        super().__init__(peer_addr)
        self.other: Any = None
        self.paused = False
        self.protocol: Any = None
        self.loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.loop.call_soon(self._deliver, bytes(data))

    def _deliver(self, data: bytes) -> None:
        peer = self.other
        if hasattr(peer, "get_buffer"):
            buf = peer.get_buffer(len(data))
            buf[: len(data)] = data
            peer.buffer_updated(len(data))
        else:
            peer.data_received(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


async def _one(down: H1Connection, down_t: _Transport) -> None:
    done = down_t.writes + 1
    down.data_received(REQUEST)
    while down_t.writes < done:
        await asyncio.sleep(0)


class _Gate(asyncio.Protocol):
    def __init__(self, app: asyncio.BaseProtocol) -> None:
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        hand_over(transport, self.app)


def _loop_tls(wire: _Wire, app: Any, ctx: Any, server_side: bool, waiter: Any) -> Any:
    """The loop's SSL protocol with the connection behind a ``ReadInto`` reader."""
    loop = asyncio.get_running_loop()
    proto = ssl_protocol_class(loop)(
        loop, _Gate(app), ctx, waiter, server_side, None, ssl_handshake_timeout=10
    )
    wire.set_protocol(proto)
    return proto


def _own_tls(wire: _Wire, app: Any, ctx: Any, server_side: bool, waiter: Any) -> Any:
    """plait's own TLS protocol, handing the connection to ``app`` once it is up."""
    proto = TlsStream(_Gate(app), ctx, server_side=server_side, waiter=waiter, timeout=10.0)
    wire.set_protocol(proto)
    return proto


_TLS = {"tls-loop": _loop_tls, "tls": _own_tls}


async def _link(mode: str, up1: _Conn, down2: H1Connection, a: _Wire, b: _Wire) -> None:
    """Connect ``up1`` (client side) to ``down2`` (server side) over ``a`` / ``b``."""
    if mode == "plain":
        a.other, b.other = down2, up1
        up1.connection_made(a)  # type: ignore[arg-type]
        down2.connection_made(b)  # type: ignore[arg-type]
        return
    ca = Authority.create()
    stores = {}
    for who in (SERVER, CLIENT):
        s = CertStore()
        chain, key = ca.leaf(who)
        s.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
        stores[who] = s
    done: list[asyncio.Future[Any]] = []
    for wire, other, app, ctx, server_side in (
        (a, b, up1, stores[CLIENT].client_context(("http/1.1",)), False),
        (b, a, down2, stores[SERVER].listener_context(), True),
    ):
        fut = asyncio.get_running_loop().create_future()
        proto = _TLS[mode](wire, app, ctx, server_side, fut)
        other.other = proto
        done.append(fut)
    for wire in (a, b):
        wire.protocol.connection_made(wire)
    for fut in done:
        await fut


async def _run(mode: str, n: int) -> float:
    random.seed(0)
    r1, r2 = _runtime(0, False), _runtime(0, False)
    name = "outbound|18080"
    async with anyio.create_task_group() as tg:
        down1 = H1Connection(_HopListener(r1, name, tg))  # type: ignore[arg-type]
        down1_t = _Transport(("127.0.0.1", 40000))
        down1.connection_made(down1_t)  # type: ignore[arg-type]
        up1 = _Conn(H1ClientCodec())
        down2 = H1Connection(_HopListener(r2, name, tg))  # type: ignore[arg-type]
        a, b = _Wire(("127.0.0.1", 15006)), _Wire(("127.0.0.1", 40001))
        await _link(mode, up1, down2, a, b)
        up2 = _Conn(H1ClientCodec())
        up2_t = _Transport(("127.0.0.1", 9))
        up2.connection_made(up2_t)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        up2_t.on_write = lambda data: loop.call_soon(up2.data_received, RESPONSE)
        for runtime, up in ((r1, up1), (r2, up2)):
            for crt in runtime.snapshot.clusters.values():
                for pool in crt.pools:
                    if isinstance(pool, H1Pool):
                        pool._idle.append(up)
        for _ in range(100):
            await _one(down1, down1_t)
        assert down1_t.last.startswith(b"HTTP/1.1 200") and down1_t.last.endswith(b"x" * 100)
        writes = a.writes + b.writes
        t0 = time.process_time()
        for _ in range(n):
            await _one(down1, down1_t)
        elapsed = time.process_time() - t0
        writes = a.writes + b.writes - writes
        if writes != 2 * n:
            print(f"  {mode}: {writes / n:.2f} writes per request between the sidecars")
        assert not (down1_t.closed or up2_t.closed or a.closed or b.closed), "closed in the run"
        tg.cancel_scope.cancel()
    return elapsed / n * 1e6


def main() -> None:
    n = int(os.environ.get("N", "20000"))
    for mode in sys.argv[1:] or ["plain", *_TLS]:
        if os.environ.get("PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            anyio.run(_run, mode, n, backend_options={"use_uvloop": True})
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            continue
        us = anyio.run(_run, mode, n, backend_options={"use_uvloop": True})
        print(f"two-sidecar hop, {mode}: {us:6.1f} us CPU per request (both sidecars)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
