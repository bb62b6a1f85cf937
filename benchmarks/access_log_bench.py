"""Micro benchmark: the CPU cost of one access-log line (``core/access_log.py``), in process.

Builds real :class:`~plait.sdk.StreamContext` objects for an outbound request that carries
a ``traceparent`` and an ``x-request-id``, and calls :meth:`AccessLog.log` on a log writing
to ``/dev/null`` (so the batched ``write`` is counted too, amortized over 256 lines). Also
times a log at 0 % sampling of successful requests (the cost of the draw alone). Run by hand:

    .venv/bin/python -m benchmarks.access_log_bench   # N=200000
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from plait.core.access_log import AccessLog
from plait.sdk import ConnectionContext, Headers, RequestHead, ResponseHead, StreamContext

N = 200_000


def _context() -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 1))
    headers = Headers()
    headers.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    headers.set("x-request-id", "req-1")
    req = RequestHead(method="GET", path="/api/items?page=2", authority="web", headers=headers)
    ctx = StreamContext(connection=conn, request=req)
    ctx.response = ResponseHead(status=200)
    ctx.route_name, ctx.cluster, ctx.upstream_address = "default/web", "web:80", "127.0.0.1:8080"
    return ctx


async def _measure(sampling: float) -> float:
    log = AccessLog("/dev/null", sampling)
    ctx = _context()
    lrt: Any = SimpleNamespace(
        name="out",
        inbound=False,
        runtime=SimpleNamespace(identity=SimpleNamespace(leaf=None)),
        upstream_identity=lambda ctx: None,  # the runtime's lookup: plaintext upstream
    )
    ex: Any = SimpleNamespace(received=lambda: 0, bytes_out=1024, attempts=1)
    t0 = time.perf_counter()
    for _ in range(N):
        log.log(ctx, lrt, 0.0012, ex)
    took = time.perf_counter() - t0
    log.close()
    return took / N * 1e6


def main() -> None:
    for sampling in (100.0, 0.0):
        us = asyncio.run(_measure(sampling))
        print(f"access log, sampling {sampling:g}%: {us:.2f} us per request")


if __name__ == "__main__":
    main()
