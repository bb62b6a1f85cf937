"""Micro benchmark: CPU cost of one h2c request through the sidecar, in process.

What ``h2load -c1 -m100`` does to a sidecar, with no sockets: the h2c preface goes to a
real :class:`~plait.core.server._h1.H1Connection` (which hands the connection to
:class:`~plait.core.server._h2.H2Connection`), then each read brings 100 GET streams
(HEADERS with END_STREAM, a header block in literals that need no HPACK state, so the
same bytes serve every batch with fresh stream ids). Each stream takes one of 100
pooled upstream :class:`~plait.core.upstream._h1._Conn` connections, whose transport
answers the request with the HTTP/1.1 response of ``benchmarks/exchange_bench.py`` on
the next loop turn. A batch ends when every stream's response went out. The figure is
the sidecar's Python cost per request, both codecs, the exchange and the loop turns
included, the syscalls not. Run by hand:

    .venv/bin/python -m benchmarks.h2_inline_bench            # N=20000 requests
    PROFILE=1 .venv/bin/python -m benchmarks.h2_inline_bench  # cProfile top 30

For instructions per request, count two runs with callgrind and divide the difference:

    PYTHONHASHSEED=0 N=2000 valgrind --tool=callgrind .venv/bin/python -m benchmarks.h2_inline_bench
    (the same with N=12000; per request: (Ir(12000) - Ir(2000)) / 10000)
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from typing import Any

import anyio

from plait.core.codec import H1ClientCodec
from plait.core.server._h1 import H1Connection
from plait.core.upstream._h1 import H1Pool, _Conn

from .exchange_bench import RESPONSE
from .inline_bench import _Listener, _runtime, _Transport

BATCH = 100
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid)
    return head + payload


def _literal(index: int, value: bytes) -> bytes:
    """A header field without indexing, its name from the static table (RFC 7541 §6.2.2)."""
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


BLOCK = (
    b"\x82\x86"  # :method GET, :scheme http (static table, indexed)
    + _literal(4, b"/bench")  # :path
    + _literal(1, b"127.0.0.1:18080")  # :authority
)


def _batch(first_sid: int) -> bytes:
    """``BATCH`` requests, each HEADERS with END_STREAM | END_HEADERS."""
    return b"".join(_frame(1, 0x5, first_sid + 2 * i, BLOCK) for i in range(BATCH))


class _Down(_Transport):
    """The client's side: takes the protocol the H1 connection hands the socket to."""

    protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


class _H2Listener(_Listener):
    def connection_handed_over(self, old: Any, new: Any) -> None:
        pass


async def _run(n: int) -> float:
    runtime = _runtime(0, False)
    name = "outbound|18080"
    loop = asyncio.get_running_loop()
    async with anyio.create_task_group() as tg:
        listener = _H2Listener(runtime, name, tg)
        first = H1Connection(listener)  # type: ignore[arg-type]
        down_t = _Down(("127.0.0.1", 40000))
        down_t.protocol = first
        first.connection_made(down_t)  # type: ignore[arg-type]
        window = _frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65535))
        first.data_received(PREFACE + _frame(4, 0, 0, b"") + window)
        h2 = down_t.protocol
        h2.data_received(_frame(4, 0x1, 0, b""))  # ACK the sidecar's SETTINGS
        for crt in runtime.snapshot.clusters.values():
            for pool in crt.pools:
                if isinstance(pool, H1Pool):
                    for _ in range(BATCH):
                        up = _Conn(H1ClientCodec())
                        up_t = _Transport(("127.0.0.1", 9))
                        up.connection_made(up_t)  # type: ignore[arg-type]
                        up_t.on_write = lambda data, up=up: loop.call_soon(
                            up.data_received, RESPONSE
                        )
                        pool._idle.append(up)
        sid = 1

        async def batch() -> None:
            nonlocal sid
            h2.data_received(_batch(sid))
            sid += 2 * BATCH
            while h2.queues:
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # the flush of the last responses

        for _ in range(5):  # warm up
            await batch()
        assert b"x" * 100 in down_t.last, down_t.last[-200:]
        batches = max(n // BATCH, 1)
        t0 = time.process_time()
        for _ in range(batches):
            await batch()
        elapsed = time.process_time() - t0
        assert not down_t.closed, "the sidecar closed the client connection"
        tg.cancel_scope.cancel()
    return elapsed / (batches * BATCH) * 1e6


def main() -> None:
    n = int(os.environ.get("N", "20000"))
    if os.environ.get("PROFILE"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        anyio.run(_run, n, backend_options={"use_uvloop": True})
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    else:
        us = anyio.run(_run, n, backend_options={"use_uvloop": True})
        print(f"h2c -m{BATCH} to HTTP/1.1: {us:6.1f} us CPU per request (incl. loop turns)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
