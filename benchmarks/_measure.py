"""One target, one round: every measurement, in a fixed order, as a flat dict of figures.

Order: idle memory → wrk warm-up → wrk c16 → wrk c64 → open loop at each rate →
h2load → memory after load. Each load phase also records the per-core busy share
(``/proc/stat``) and the proxy's own CPU time per request (``schedstat``, exact).
A phase that fails is recorded under ``failures`` and the next phase still runs.

Figure keys (all numbers; missing when the phase failed or does not apply):
``c16_rps``, ``c64_rps``, ``h2_rps``; ``ol<rate>_p50_us`` ... ``_max_us`` (from the
scheduled time, coordinated-omission corrected) and ``ol<rate>_send_p50_us`` ...
(from the actual send); ``rss_idle_mib``, ``rss_load_mib``, ``pss_*``;
``<phase>_core0_busy``, ``<phase>_core1_busy`` (percent), ``<phase>_proxy_cpu_us``
(proxy CPU microseconds per request); ``<phase>_errors``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._openloop import run_openloop
from ._procs import cpu_share, group_cpu_ns, group_memory_kib
from ._targets import Running
from ._wrk import run_h2load, run_wrk

__all__ = ["Settings", "measure_target"]


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    rates: tuple[int, ...]
    connections: tuple[int, ...] = (16, 64)
    openloop_conns: int = 32
    h2: bool = True


@dataclass
class _Result:
    figures: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def measure_target(run: Running, settings: Settings, openloop_bin: Path) -> dict[str, Any]:
    """Run every measurement against ``run``; returns figures, raw outputs and failures."""
    res = _Result()
    pgid = run.proc.pid if run.proc is not None else None
    time.sleep(0.5)
    _memory(res, pgid, "idle")
    with _phase(res, "warmup", pgid):
        run_wrk(run.h1_port, max(settings.connections), settings.warmup)
    for conns in settings.connections:
        with _phase(res, f"c{conns}", pgid) as ph:
            out = run_wrk(run.h1_port, conns, settings.duration)
            ph.requests, ph.out = out["requests"], out
            res.figures[f"c{conns}_rps"] = out["rps"]
            res.figures[f"c{conns}_errors"] = out["errors"]
    for rate in settings.rates:
        with _phase(res, f"ol{rate}", pgid) as ph:
            out = run_openloop(
                openloop_bin, run.h1_port, rate, duration=settings.duration,
                warmup=min(1.0, settings.warmup), connections=settings.openloop_conns,
            )  # fmt: skip
            ph.requests, ph.out = out["completed"], out
            _openloop_figures(res.figures, f"ol{rate}", out)
    if settings.h2:
        with _phase(res, "h2", pgid) as ph:
            out = run_h2load(run.h2_port, settings.duration, min(1.0, settings.warmup))
            ph.requests, ph.out = out["requests"], out
            res.figures["h2_rps"] = out["rps"]
            res.figures["h2_errors"] = out["errors"]
    _memory(res, pgid, "load")
    return {"figures": res.figures, "raw": res.raw, "failures": res.failures}


def _openloop_figures(figures: dict[str, float], key: str, out: dict[str, Any]) -> None:
    for basis, prefix in (("sched", key), ("send", f"{key}_send")):
        lat = out["latency_us"][basis] or {}
        for pct in ("p50", "p90", "p99", "max"):
            if pct in lat:
                figures[f"{prefix}_{pct}_us"] = lat[pct]
    errs = out["errors"]
    figures[f"{key}_errors"] = sum(v for k, v in errs.items() if k != "reconnects")
    figures[f"{key}_achieved_rps"] = out["achieved_rps"]
    if out.get("slip_us"):
        figures[f"{key}_slip_p99_us"] = out["slip_us"]["p99"]


def _memory(res: _Result, pgid: int | None, when: str) -> None:
    if pgid is None:
        return
    rss, pss = group_memory_kib(pgid)
    res.figures[f"rss_{when}_mib"] = round(rss / 1024, 1)
    res.figures[f"pss_{when}_mib"] = round(pss / 1024, 1)


@dataclass
class _Phase:
    requests: int | None = None
    out: Any = None


@contextlib.contextmanager
def _phase(res: _Result, name: str, pgid: int | None) -> Iterator[_Phase]:
    ph = _Phase()
    cpu0 = group_cpu_ns(pgid) if pgid is not None else 0
    try:
        with cpu_share() as share:
            yield ph
    except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        res.failures[name] = f"{type(exc).__name__}: {exc}"
        print(f"      {name}: FAILED {res.failures[name]}", flush=True)
        return
    if name == "warmup":
        return
    cpu = share["share"]
    res.figures[f"{name}_core0_busy"] = cpu.busy.get(0, 0.0)
    res.figures[f"{name}_core1_busy"] = cpu.busy.get(1, 0.0)
    res.raw[name] = {"out": ph.out, "softirq": cpu.softirq, "busy": cpu.busy}
    if pgid is not None and ph.requests:
        used = group_cpu_ns(pgid) - cpu0
        res.figures[f"{name}_proxy_cpu_us"] = round(used / ph.requests / 1e3, 2)
