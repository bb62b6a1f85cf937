"""One target, one round: every measurement, in a fixed order, as a flat dict of figures.

Order: idle memory → wrk warm-up → wrk c16 → wrk c64 → open loop at each rate →
h2load → memory after load. Each load phase also records the per-core busy share
(``/proc/stat``) and the proxy's own CPU time per request (``schedstat``, exact).
A phase that fails is recorded under ``failures`` and the next phase still runs.
A phase during which other processes used >= FOREIGN_WARN_PCT of a core is run
again (``Settings.retries``, after waiting for quiet); the least tainted attempt
is kept, and ``<phase>_attempts`` says how many there were.

Figure keys (all numbers; missing when the phase failed or does not apply):
``c16_rps``, ``c64_rps``, ``h2_rps``; ``ol<rate>_p50_us`` ... ``_max_us`` (from the
scheduled time, coordinated-omission corrected) and ``ol<rate>_send_p50_us`` ...
(from the actual send); ``rss_idle_mib``, ``rss_load_mib``, ``pss_*``;
``<phase>_core0_busy``, ``<phase>_core1_busy`` (percent), ``<phase>_proxy_cpu_us``
(proxy CPU microseconds per request); ``<phase>_errors``; ``<phase>_foreign_pct``
and ``foreign_max_pct`` (CPU used by processes that are not part of the benchmark,
in percent of one core: above a few percent the phase's figures are suspect).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._openloop import run_openloop
from ._procs import (
    CpuShare,
    ForeignCpu,
    await_quiet,
    cpu_share,
    describe_foreign,
    foreign_cpu,
    group_cpu_ns,
    group_memory_kib,
)
from ._targets import Running
from ._wrk import run_h2load, run_wrk

__all__ = ["FOREIGN_WARN_PCT", "Settings", "measure_target"]

FOREIGN_WARN_PCT = 5.0
"""Other processes using more than this share of a core during a phase taint it."""


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    rates: tuple[int, ...]
    connections: tuple[int, ...] = (16, 64)
    openloop_conns: int = 32
    h2: bool = True
    retries: int = 2
    """Extra attempts for a phase that other processes competed with."""
    wait_quiet: float = 60.0
    """Seconds to wait for the machine to go quiet before such a retry."""


@dataclass
class _Result:
    figures: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    own_pgids: set[int] = field(default_factory=set)


def measure_target(
    run: Running, settings: Settings, openloop_bin: Path, own_pgids: set[int]
) -> dict[str, Any]:
    """Run every measurement against ``run``; returns figures, raw outputs and failures.

    ``own_pgids``: the harness's and the upstream's process groups; CPU used by any
    other process (outside those and the target's) is recorded as contention.
    """
    pgid = run.proc.pid if run.proc is not None else None
    res = _Result(own_pgids=own_pgids | ({pgid} if pgid is not None else set()))
    time.sleep(0.5)
    _memory(res, pgid, "idle")
    warm = min(1.0, settings.warmup)

    def wrk(conns: int, secs: float) -> Callable[[], _Load]:
        def load() -> _Load:
            out = run_wrk(run.h1_port, conns, secs)
            figs = {f"c{conns}_rps": out["rps"], f"c{conns}_errors": out["errors"]}
            return out["requests"], out, figs

        return load

    def openloop(rate: int) -> Callable[[], _Load]:
        def load() -> _Load:
            out = run_openloop(
                openloop_bin, run.h1_port, rate, duration=settings.duration, warmup=warm,
                connections=settings.openloop_conns,
            )  # fmt: skip
            return out["completed"], out, _openloop_figures(f"ol{rate}", out)

        return load

    def h2() -> _Load:
        out = run_h2load(run.h2_port, settings.duration, warm)
        return out["requests"], out, {"h2_rps": out["rps"], "h2_errors": out["errors"]}

    _run_phase(res, settings, "warmup", pgid, wrk(max(settings.connections), settings.warmup))
    for conns in settings.connections:
        _run_phase(res, settings, f"c{conns}", pgid, wrk(conns, settings.duration))
    for rate in settings.rates:
        _run_phase(res, settings, f"ol{rate}", pgid, openloop(rate))
    if settings.h2 and run.spec.h2:
        _run_phase(res, settings, "h2", pgid, h2)
    _memory(res, pgid, "load")
    foreign = [v for k, v in res.figures.items() if k.endswith("_foreign_pct")]
    if foreign:
        res.figures["foreign_max_pct"] = max(foreign)
    return {"figures": res.figures, "raw": res.raw, "failures": res.failures}


def _openloop_figures(key: str, out: dict[str, Any]) -> dict[str, float]:
    figures = {}
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
    return figures


def _memory(res: _Result, pgid: int | None, when: str) -> None:
    if pgid is None:
        return
    rss, pss = group_memory_kib(pgid)
    res.figures[f"rss_{when}_mib"] = round(rss / 1024, 1)
    res.figures[f"pss_{when}_mib"] = round(pss / 1024, 1)


_Load = tuple[int, Any, dict[str, float]]
"""What a load phase returns: requests completed, the tool's output, its figures."""


@dataclass
class _Sample:
    requests: int
    out: Any
    figures: dict[str, float]
    share: CpuShare
    foreign: ForeignCpu
    proxy_cpu_ns: int | None


def _sample(own_pgids: set[int], pgid: int | None, load: Callable[[], _Load]) -> _Sample:
    cpu0 = group_cpu_ns(pgid) if pgid is not None else 0
    with foreign_cpu(own_pgids) as foreign, cpu_share() as share:
        requests, out, figures = load()
    used = group_cpu_ns(pgid) - cpu0 if pgid is not None else None
    return _Sample(requests, out, figures, share["share"], foreign, used)


_FAILURES = (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError)


def _run_phase(
    res: _Result, settings: Settings, name: str, pgid: int | None, load: Callable[[], _Load]
) -> None:
    best: _Sample | None = None
    attempts = 0
    for attempt in range(1 + settings.retries):
        if attempt:
            await_quiet(res.own_pgids, settings.wait_quiet, FOREIGN_WARN_PCT)
        attempts += 1
        try:
            s = _sample(res.own_pgids, pgid, load)
        except _FAILURES as exc:
            res.failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"      {name}: FAILED {res.failures[name]}", flush=True)
            return
        if best is None or s.foreign.pct < best.foreign.pct:
            best = s
        if s.foreign.pct < FOREIGN_WARN_PCT or name == "warmup":
            break
        again = "retrying" if attempt < settings.retries else "keeping the least tainted attempt"
        print(
            f"      WARNING {name}: other processes used {s.foreign.pct:.0f}% of a core "
            f"({describe_foreign(s.foreign)}); {again}",
            flush=True,
        )
    if best is None or name == "warmup":
        return
    _record(res, name, best, attempts)


def _record(res: _Result, name: str, s: _Sample, attempts: int) -> None:
    res.figures.update(s.figures)
    res.figures[f"{name}_core0_busy"] = s.share.busy.get(0, 0.0)
    res.figures[f"{name}_core1_busy"] = s.share.busy.get(1, 0.0)
    res.figures[f"{name}_foreign_pct"] = s.foreign.pct
    res.figures[f"{name}_attempts"] = attempts
    if s.proxy_cpu_ns is not None and s.requests:
        res.figures[f"{name}_proxy_cpu_us"] = round(s.proxy_cpu_ns / s.requests / 1e3, 2)
    res.raw[name] = {
        "out": s.out, "softirq": s.share.softirq, "busy": s.share.busy,
        "foreign_top": s.foreign.top,
    }  # fmt: skip
