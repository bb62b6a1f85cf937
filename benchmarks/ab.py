"""Interleaved A/B: two targets running side by side, measured in alternating short bursts.

    .venv/bin/python -m benchmarks.ab plait plait-res [--pairs 12] [--secs 3] [-c 64]
    .venv/bin/python -m benchmarks.ab nginx plait --rate 1000 [--pairs 6] [--secs 8]
    .venv/bin/python -m benchmarks.ab plait-bare plait-obs --h2   # h2c, one connection
    .venv/bin/python -m benchmarks.ab reference plait   # plait / the reference proxy
    .venv/bin/python -m benchmarks.ab plait plait --b-checkout ../base   # two builds

``--b-checkout DIR`` runs target B from another plait checkout's build (its
``.venv``; e.g. ``git worktree add ../base HEAD~3 && bash ../base/scripts/setup.sh``),
so a change is measured against the commit before it in the same run.

Why, next to ``benchmarks.run``: on this VM the speed of the same build drifts by
±25 % within minutes (docs/benchmarks.md), and ``run`` measures each target for a
few tens of seconds per round, minutes apart from the other. For the *cost of a
feature* (the resilience stack against the empty chain, 5 filters against none)
that noise is larger than the effect. Here both targets stay up, one upstream
serves both, and each pair of bursts (order alternating A B, B A, ...) is seconds
apart; the figure is the median of the per-pair ratios, with its quartiles, so a
slow spell hits both halves of a pair or shows as an outlier pair.

Closed loop (default): ``wrk -c<c>`` bursts; prints req/s and the proxy's CPU per
request (schedstat, exact) for each target and the ratios B/A. ``--h2``: h2c
instead, ``h2load -c1 -m100`` bursts (one connection, 100 streams at a time: the HTTP/2
path's own per-request work, as ``run``'s h2load phase). Open loop
(``--rate``): the open-loop generator at that rate per burst; prints p50/p99
(from the schedule) and CPU per request, and the ratios B/A.
Placement as in ``run``: load and upstream on core 0, proxies on core 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._openloop import build_openloop, run_openloop
from ._procs import group_cpu_ns, require_tools
from ._targets import TARGETS, Running, start_target, start_upstream
from ._wrk import run_h2load, run_wrk

Burst = Callable[[Running], dict[str, float]]


def _closed(conns: int, secs: float) -> Burst:
    def burst(run: Running) -> dict[str, float]:
        out = run_wrk(run.h1_port, conns, secs)
        return {"req/s": float(out["rps"]), "_n": float(out["requests"])}

    return burst


def _h2(secs: float) -> Burst:
    def burst(run: Running) -> dict[str, float]:
        out = run_h2load(run.h2_port, secs, 0.0)
        if out["errors"]:
            raise RuntimeError(f"{run.spec.name}: {out['errors']} h2load requests failed")
        return {"req/s": float(out["rps"]), "_n": float(out["requests"])}

    return burst


def _open(rate: int, secs: float) -> Burst:
    binary = build_openloop()

    def burst(run: Running) -> dict[str, float]:
        out = run_openloop(binary, run.h1_port, rate, duration=secs, warmup=1.0)
        sched = out["latency_us"]["sched"]
        return {"p50 us": sched["p50"], "p99 us": sched["p99"], "_n": float(out["completed"])}

    return burst


def _measure(run: Running, burst: Burst) -> dict[str, float]:
    assert run.proc is not None
    before = group_cpu_ns(run.proc.pid)
    figs = burst(run)
    figs["cpu us/req"] = (group_cpu_ns(run.proc.pid) - before) / 1000 / max(figs.pop("_n"), 1)
    return figs


def _summary(a: str, b: str, runs: dict[str, list[dict[str, float]]]) -> str:
    lines = []
    keys = list(runs[a][0])
    for name in (a, b):
        med = {k: statistics.median(r[k] for r in runs[name]) for k in keys}
        lines.append(f"{name:>12}: " + ", ".join(f"{k} {v:,.1f}" for k, v in med.items()))
    for k in keys:
        ratios = [y[k] / x[k] for x, y in zip(runs[a], runs[b], strict=True) if x[k]]
        q1, _, q3 = statistics.quantiles(ratios) if len(ratios) > 1 else (ratios[0],) * 3
        lines.append(
            f"{b}/{a} {k}: median {statistics.median(ratios):.3f} (quartiles {q1:.3f}..{q3:.3f}; "
            f"pairs {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    p.add_argument("a", choices=[t for t in TARGETS if t != "direct"])
    p.add_argument("b", choices=[t for t in TARGETS if t != "direct"])
    p.add_argument("--pairs", type=int, default=12, help="pairs of bursts (12)")
    p.add_argument("--secs", type=float, default=3.0, help="seconds per burst (3)")
    p.add_argument("-c", "--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--rate", type=int, default=0, help="open loop at this req/s instead of wrk")
    p.add_argument("--h2", action="store_true", help="h2c bursts (h2load -c1 -m100) instead of wrk")
    p.add_argument("--b-checkout", type=Path, help="run B from this plait checkout's build")
    args = p.parse_args(argv)
    spec_a, spec_b = TARGETS[args.a], TARGETS[args.b]
    if args.b_checkout is not None:
        if spec_b.kind != "plait" or not (args.b_checkout / ".venv/bin/plait").exists():
            p.error("--b-checkout needs a plait target B and a checkout with .venv/bin/plait")
        checkout = args.b_checkout.resolve()
        spec_b = dataclasses.replace(
            spec_b, name=f"{spec_b.name}@{checkout.name}", checkout=checkout
        )
    if spec_a.name == spec_b.name:
        p.error("give two different targets (or --b-checkout)")
    if args.h2 and args.rate:
        p.error("--h2 and --rate: one or the other")
    require_tools(["nginx", "wrk", "taskset", "cc"] + (["h2load"] if args.h2 else []))
    if args.h2:
        burst = _h2(args.secs)
    else:
        burst = _open(args.rate, args.secs) if args.rate else _closed(args.connections, args.secs)
    base = Path(tempfile.mkdtemp(prefix="plait-ab-"))
    upstream = start_upstream(base, 10.0)
    a, b = spec_a.name, spec_b.name
    started: dict[str, Running] = {}
    try:
        for spec in (spec_a, spec_b):
            started[spec.name] = start_target(base, spec, upstream, 20.0)
        runs: dict[str, list[dict[str, float]]] = {a: [], b: []}
        for i in range(args.pairs):
            for name in (a, b) if i % 2 == 0 else (b, a):
                runs[name].append(_measure(started[name], burst))
            print(f"pair {i + 1}/{args.pairs}", flush=True)
        print(_summary(a, b, runs))
    finally:
        for run in started.values():
            run.stop()
        upstream.proc.stop()


if __name__ == "__main__":
    main()
