"""The data-path benchmark: plait and its peers, back to back, in rounds.

    .venv/bin/python -m benchmarks.run [--duration 10] [--rounds 3] [--targets a,b] [--quick]

Targets (``--targets``, comma-separated, in this order): direct (no proxy),
nginx, haproxy, reference (benchmarks/reference_proxy.py), plait, plait-5f,
plait-res, plait-2w. A target that does not start or
does not relay a request is reported as unavailable and skipped in later rounds.

Placement: load generators and the upstream on core 0, the proxy on core 1.
See docs/benchmarks.md for how to read the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from . import _report
from ._measure import FOREIGN_WARN_PCT, Settings, measure_target
from ._openloop import build_openloop
from ._procs import ProcessFailed, await_quiet, require_tools
from ._targets import REPO, TARGETS, Upstream, start_target, start_upstream

RESULTS = REPO / "benchmarks" / "results"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="plait data-path benchmark"
    )
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (10)")
    p.add_argument("--rounds", type=int, default=None, help="rounds over all targets (3)")
    p.add_argument(
        "--targets",
        default=",".join(n for n, t in TARGETS.items() if not t.breakdown),
        help="comma-separated target names",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s, 1 round")
    p.add_argument("--rates", default="1000,3000", help="open-loop rates, req/s")
    p.add_argument("--no-h2", action="store_true", help="skip the h2load measurement")
    p.add_argument("--ready-timeout", type=float, default=20.0, help="seconds to wait for a target")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="seconds to wait for other processes to go idle before a target or a retry (60)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="extra attempts for a phase that other processes competed with (2)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path (benchmarks/results/TS.json)")
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    args.names = [n for n in TARGETS if n in names]  # canonical order
    args.rate_list = tuple(int(r) for r in args.rates.split(",") if r.strip())
    return args


def _version(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return f"unavailable: {exc}"
    text = (res.stdout + res.stderr).strip().splitlines()
    return text[0] if text else ""


def _meta(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), "?",
    )  # fmt: skip
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python -m benchmarks.run", *argv]),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "targets": args.names,
        "rates": list(args.rate_list),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "git": _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_version(["git", "-C", str(REPO), "status", "--porcelain"])),
        "tools": {
            "nginx": _version(["nginx", "-v"]),
            "haproxy": _version(["haproxy", "-v"]),
            "wrk": _version(["wrk", "-v"]),
            "h2load": _version(["h2load", "--version"]),
            "cc": _version(["cc", "--version"]),
        },
        "placement": {"load_generator": 0, "upstream": 0, "proxy": 1},
    }


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _headline(fig: dict[str, float], rates: tuple[int, ...]) -> str:
    parts = [f"c16 {fig.get('c16_rps', 0):.0f}", f"c64 {fig.get('c64_rps', 0):.0f} req/s"]
    for r in rates:
        if f"ol{r}_p50_us" in fig:
            parts.append(f"{r}/s p50 {fig[f'ol{r}_p50_us']:.0f} p99 {fig[f'ol{r}_p99_us']:.0f} us")
    if "h2_rps" in fig:
        parts.append(f"h2 {fig['h2_rps']:.0f} req/s")
    if "rss_load_mib" in fig:
        parts.append(f"RSS {fig['rss_load_mib']:.0f} MiB")
    return ", ".join(parts)


def _run_rounds(
    args: argparse.Namespace, *, base: Path, upstream: Upstream, binary: Path,
    rounds: list[dict[str, Any]], unavailable: dict[str, str],
) -> None:  # fmt: skip
    settings = Settings(
        duration=args.duration,
        warmup=1.0 if args.quick else 2.0,
        rates=args.rate_list,
        h2=not args.no_h2,
        retries=args.retries,
        wait_quiet=args.wait_quiet,
    )
    own = {os.getpgrp(), upstream.proc.pid}
    for i in range(args.rounds):
        rnd: dict[str, Any] = {}
        rounds.append(rnd)
        for name in args.names:
            if name in unavailable:
                continue
            spec = TARGETS[name]
            print(f"[round {i + 1}/{args.rounds}] {spec.label} ...", flush=True)
            before = await_quiet(own, args.wait_quiet, FOREIGN_WARN_PCT)
            try:
                running = start_target(base, spec, upstream, args.ready_timeout)
            except (ProcessFailed, OSError, http.client.HTTPException) as exc:
                unavailable[name] = str(exc)
                print(f"      unavailable: {exc}", flush=True)
                continue
            try:
                rnd[name] = measure_target(running, settings, binary, own)
                rnd[name]["figures"]["foreign_before_pct"] = before
            finally:
                running.stop()
            print(f"      {_headline(rnd[name]['figures'], args.rate_list)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("benchmarks: needs 2 cores (load on core 0, proxy on core 1)")
    tools = ["taskset", "nginx", "wrk", "cc"]
    tools += ["h2load"] if not args.no_h2 else []
    tools += ["haproxy"] if "haproxy" in args.names else []
    require_tools(tools)
    signal.signal(signal.SIGTERM, _on_sigterm)
    binary = build_openloop()
    meta = _meta(args, argv)
    out = args.out or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    rounds: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    base = Path(tempfile.mkdtemp(prefix="plait-bench-"))
    interrupted = True
    try:
        upstream = start_upstream(base, args.ready_timeout)
        try:
            _run_rounds(
                args, base=base, upstream=upstream, binary=binary,
                rounds=rounds, unavailable=unavailable,
            )  # fmt: skip
            interrupted = False
        finally:
            upstream.proc.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if any(rounds):
            _finish(
                args, meta=meta, rounds=rounds, unavailable=unavailable,
                out=out, interrupted=interrupted,
            )  # fmt: skip
    return 0


def _finish(
    args: argparse.Namespace, *, meta: dict[str, Any], rounds: list[dict[str, Any]],
    unavailable: dict[str, str], out: Path, interrupted: bool,
) -> None:  # fmt: skip
    summary = _report.summarize(rounds, args.names)
    labels = {n: TARGETS[n].label for n in TARGETS}
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["interrupted"] = interrupted
    doc = {
        "meta": meta,
        "targets": {
            n: {"label": labels[n], "available": n not in unavailable,
                "reason": unavailable.get(n)}
            for n in args.names
        },
        "rounds": rounds,
        "summary": summary,
    }  # fmt: skip
    _report.write_json(out, doc)
    print()
    print(_report.format_tables(summary, labels, args.rate_list, unavailable, len(rounds)))
    print(_report.format_contention(rounds, labels, FOREIGN_WARN_PCT))
    print(f"JSON: {out}")


if __name__ == "__main__":
    sys.exit(main())
