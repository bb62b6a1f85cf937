"""Micro benchmark: CPU cost of one request on the callback (inline) HTTP/1.1 path.

Drives a real :class:`~plait.core.server._h1.H1Connection` and a real upstream
:class:`~plait.core.upstream._h1.H1Pool` connection over in-memory transports:
the request bytes go to the downstream ``data_received``, the upstream
transport's ``write`` is answered with the response bytes through the upstream
connection's ``data_received``, and the downstream transport's ``write`` receives
the response. Everything between those two calls is the code a real sidecar runs
per request on the hot path except the syscalls, so the figure is the Python
cost that decides throughput. Run by hand:

    .venv/bin/python -m benchmarks.inline_bench [N_FILTERS | res | OBS ...]   # N=50000
    PROFILE=1 .venv/bin/python -m benchmarks.inline_bench 0              # cProfile top 30

``OBS`` runs the ``plait-obs`` benchmark target's observability (``_configs.observed``)
with no filter: ``obs`` an access log and tracing at 1 %, ``obs-log`` the access log
only, ``obs-trace`` tracing only; ``bare`` none of them and the request metrics off (all
three off, the ``plait-bare`` target). The log goes to ``/dev/null``, spans for a port where
nothing listens are never exported: the SDK's batch timer is set beyond the run, so what
is counted is the request path, the sampled spans included, not their export; the random
draws are seeded, so a run samples the same requests.
For instructions per request, count two runs with callgrind and divide the difference:

    PYTHONHASHSEED=0 N=1000 valgrind --tool=callgrind \\
        .venv/bin/python -m benchmarks.inline_bench obs
    (the same with N=6000; per request: (Ir(6000) - Ir(1000)) / 5000)
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from plait.core.codec import H1ClientCodec
from plait.core.config import load_config
from plait.core.runtime import Runtime
from plait.core.server._h1 import H1Connection
from plait.core.upstream._h1 import H1Pool, _Conn
from plait.plugins import load_filter_types

from ._configs import METRICS_OFF
from .exchange_bench import CONFIG, REQUEST, RESPONSE


class _Transport:
    """The transport both connections see: ``write`` hands the bytes to ``on_write``."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.on_write: Any = None
        self.last = b""
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1
        if self.on_write is not None:
            self.on_write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 18080)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    abort = close


class _Listener:
    def __init__(self, runtime: Runtime, name: str, tg: Any) -> None:
        self.runtime = runtime
        self.name = name
        self.tg = tg
        self.max_header_bytes = 64 * 1024
        self.sniff_h2 = True
        self.timeouts = runtime.snapshot.listeners[name].config.timeouts

    def connection_opened(self, conn: Any) -> None:
        pass

    def connection_closed(self, conn: Any) -> None:
        pass


_OBS = {
    "obs": (True, True),
    "obs-log": (True, False),
    "obs-trace": (False, True),
    "bare": (False, False),
}
"""The observability arguments: (access log, tracing at 1 %)."""


def _observed(config: str, access_log: bool, tracing: bool) -> str:
    """``config`` with the Sidecar's access log and/or tracing as ``_configs.observed``
    sets them for the ``plait-obs`` target; neither: the request metrics off too."""
    if not (access_log or tracing):
        return config + METRICS_OFF
    extra = ""
    if access_log:
        extra += "  accessLog: {path: /dev/null}\n"
    if tracing:
        extra += "  tracing: {sampling: 1, otlp: {endpoint: 'http://127.0.0.1:9'}}\n"
    return config.replace("  egress:\n", extra + "  egress:\n", 1)


def _runtime(
    n_filters: int, resilience: bool, chain: str | None = None, obs: tuple[bool, bool] | None = None
) -> Runtime:
    """The runtime of the bench config; ``chain`` (a YAML flow list) replaces the
    ``n_filters`` pass-through filters; ``obs``: (access log, tracing at 1 %)."""
    from benchmarks import passthrough_filter
    from benchmarks._configs import RESILIENCE

    filters = chain or "[" + ", ".join(["{type: bench-passthrough}"] * n_filters) + "]"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        text = CONFIG.replace("FILTERS", filters) + (RESILIENCE if resilience else "")
        if obs is not None:
            text = _observed(text, *obs)
        path.write_text(text)
        return Runtime(load_config([path], load_filter_types(passthrough_filter)))


async def _one(down: H1Connection, down_t: _Transport) -> None:
    """One request in; returns once its response went out (the upstream answer runs as
    a loop callback, with or without upstream layers: their policies are plain calls)."""
    done = down_t.writes + 1
    down.data_received(REQUEST)
    while down_t.writes < done:
        await asyncio.sleep(0)


async def _run(
    n_filters: int,
    n: int,
    resilience: bool,
    chain: str | None = None,
    check: Callable[[bytes, bytes], None] | None = None,
    obs: tuple[bool, bool] | None = None,
) -> float:
    """CPU µs per request; ``check(request sent upstream, response sent downstream)``
    runs once after the warm-up."""
    random.seed(0)  # tracing's sampling draws: the same requests sampled in every run
    runtime = _runtime(n_filters, resilience, chain, obs)
    name = "outbound|18080"
    async with anyio.create_task_group() as tg:
        down = H1Connection(_Listener(runtime, name, tg))  # type: ignore[arg-type]
        down_t = _Transport(("127.0.0.1", 40000))
        down.connection_made(down_t)  # type: ignore[arg-type]
        up = _Conn(H1ClientCodec())
        up_t = _Transport(("127.0.0.1", 9))
        up.connection_made(up_t)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        up_t.on_write = lambda data: loop.call_soon(up.data_received, RESPONSE)
        for crt in runtime.snapshot.clusters.values():
            for pool in crt.pools:
                if isinstance(pool, H1Pool):
                    pool._idle.append(up)
        # warm up, and check the round trip once
        for _ in range(100):
            await _one(down, down_t)
        assert down_t.last.startswith(b"HTTP/1.1 200") and down_t.last.endswith(b"x" * 100)
        if check is not None:
            check(up_t.last, down_t.last)
        t0 = time.process_time()
        for _ in range(n):
            await _one(down, down_t)
        elapsed = time.process_time() - t0
        assert not (down_t.closed or up_t.closed), "a connection was closed during the run"
        tg.cancel_scope.cancel()
    if runtime.access_log is not None:
        runtime.access_log.close()
    return elapsed / n * 1e6


def main() -> None:
    n = int(os.environ.get("N", "50000"))
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "3600000")  # no export during the run
    for arg in sys.argv[1:] or ["0", "5"]:
        res = arg == "res"
        obs = _OBS.get(arg)
        k = 0 if res or obs is not None else int(arg)
        what = "retry + breaker + P2C-EWMA" if res else f"{k} pass-through filters"
        if obs is not None:
            what = {"obs": "access log + tracing 1 %", "obs-log": "access log",
                    "obs-trace": "tracing 1 %", "bare": "request metrics off"}[arg]  # fmt: skip
        if os.environ.get("PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            anyio.run(_run, k, n, res, None, None, obs, backend_options={"use_uvloop": True})
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            continue
        us = anyio.run(_run, k, n, res, None, None, obs, backend_options={"use_uvloop": True})
        print(f"inline path, {what}: {us:6.1f} us CPU per request (incl. one loop turn)")
    sys.stdout.flush()
    os._exit(0)  # not the tracer's exit hook: it would wait for the dead collector


if __name__ == "__main__":
    main()
