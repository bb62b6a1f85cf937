"""Micro benchmark: what the tap hook costs a request when nobody taps, and when one does.

``ListenerRuntime.record`` runs once per request; its tap hook is one check of the
runtime's (empty) list of watchers. Measured three ways, in process:

* the compiled ``record`` (the build in use) with nobody tapping, and with one
  watcher that takes every record (its queue drained between rounds);
* an A/B in the interpreted source: ``core/runtime.py`` loaded as plain Python twice,
  as it is and with the hook's two lines taken out, timed in alternating rounds; the
  difference is the hook's cost (an upper bound: the compiled build is faster).

Run by hand (a quiet machine gives steadier figures):

    .venv/bin/python -m benchmarks.tap_hook_bench [N]    # N=200000 calls per round

Instruction counts do not depend on the machine's load: ``loop with|without N`` only
calls the interpreted ``record`` N times, so under callgrind the difference between two
N, divided by it, is the instructions per call of each variant:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m benchmarks.tap_hook_bench loop with 20000   # then 40000, without
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from plait.core.config import load_config
from plait.core.runtime import Runtime
from plait.core.tap import Tap, TapFilter
from plait.plugins import load_filter_types
from plait.sdk import ConnectionContext, RequestHead, ResponseHead, StreamContext

from .exchange_bench import CONFIG

_HOOK = """        if self._taps:  # nobody taps: this empty-list check is the whole cost
            publish(self._taps, ctx, self.name, self.inbound, seconds)
"""


def _interpreted(name: str, drop_hook: bool) -> ModuleType:
    source = (Path(__file__).parent.parent / "core" / "runtime.py").read_text()
    assert _HOOK in source, "the hook's lines changed: update _HOOK"
    if drop_hook:
        source = source.replace(_HOOK, "")
    module = ModuleType(f"plait.core.{name}")
    module.__package__ = "plait.core"
    sys.modules[module.__name__] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def _runtime(cls: Any) -> Any:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        path.write_text(CONFIG.replace("FILTERS", "[]"))
        return cls(load_config([path], load_filter_types()))


def _ctx() -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 1), local_address=("127.0.0.1", 2))
    ctx = StreamContext(connection=conn, request=RequestHead(method="GET", path="/x"))
    ctx.response = ResponseHead(status=200)
    return ctx


def _per_call_ns(record: Any, ctx: StreamContext, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        record(ctx, 0.001)
    return (time.perf_counter_ns() - start) / n


async def main(n: int) -> None:
    ctx = _ctx()
    compiled = _runtime(Runtime)
    lrt = next(iter(compiled.snapshot.listeners.values()))
    idle = min(_per_call_ns(lrt.record, ctx, n) for _ in range(5))
    tap = Tap(TapFilter(), queue=n + 1)
    compiled.taps.append(tap)
    watched = []
    for _ in range(5):
        watched.append(_per_call_ns(lrt.record, ctx, n))
        while True:
            try:
                tap.receive.receive_nowait()
            except anyio.WouldBlock:
                break
    compiled.taps.clear()
    tap.close()
    print(f"compiled record(): nobody taps {idle:.0f} ns/request; one watcher {min(watched):.0f}")

    with_hook = _interpreted("runtime_with_hook", drop_hook=False)
    without = _interpreted("runtime_without_hook", drop_hook=True)
    a = next(iter(_runtime(with_hook.Runtime).snapshot.listeners.values())).record
    b = next(iter(_runtime(without.Runtime).snapshot.listeners.values())).record
    rounds_a, rounds_b = [], []
    for _ in range(7):
        rounds_a.append(_per_call_ns(a, ctx, n))
        rounds_b.append(_per_call_ns(b, ctx, n))
    best_a, best_b = min(rounds_a), min(rounds_b)
    print(
        f"interpreted record(): with the hook {best_a:.0f} ns, without {best_b:.0f} ns, "
        f"hook {best_a - best_b:+.0f} ns/request (best of 7 alternating rounds of {n})"
    )


async def loop(variant: str, n: int) -> None:
    module = _interpreted(f"runtime_{variant}", drop_hook=variant == "without")
    record = next(iter(_runtime(module.Runtime).snapshot.listeners.values())).record
    _per_call_ns(record, _ctx(), n)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "loop":
        anyio.run(loop, sys.argv[2], int(sys.argv[3]))
    else:
        anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
