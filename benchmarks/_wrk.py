"""Closed-loop load: ``wrk`` (HTTP/1.1) and ``h2load`` (h2c), pinned to the load core."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from ._procs import LOAD_CORE

__all__ = ["parse_h2load", "parse_wrk", "run_h2load", "run_wrk"]

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(LOAD_CORE), *argv]


def _run(argv: list[str], timeout: float) -> str:
    res = subprocess.run(
        _pinned(argv), check=False, capture_output=True, text=True, timeout=timeout
    )
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {res.returncode}: {res.stderr.strip()[-400:]}")
    return res.stdout


def run_wrk(port: int, connections: int, duration: float) -> dict[str, Any]:
    """``wrk -t1 -c<connections>`` for ``duration`` seconds; returns parsed figures."""
    secs = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    out = _run([*argv, f"http://127.0.0.1:{port}/"], timeout=secs + 30)
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk: no Requests/sec in output: {out[-400:]}")
    res: dict[str, Any] = {"rps": float(rps.group(1))}
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    res["requests"] = int(total.group(1)) if total else None
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = (sum(int(g) for g in sock.groups()) if sock else 0) + (
        int(non2xx.group(1)) if non2xx else 0
    )
    for pct, val, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        res[f"p{pct}_us"] = round(float(val) * _UNITS[unit], 1)
    return res


def run_h2load(port: int, duration: float, warmup: float) -> dict[str, Any]:
    """``h2load -c1 -m100`` (h2c prior knowledge) for ``duration`` seconds."""
    secs = max(1, round(duration))
    argv = ["h2load", "-t1", "-c1", "-m100", "-D", str(secs)]
    if warmup > 0:
        argv += ["--warm-up-time", f"{max(1, round(warmup))}s"]
    out = _run([*argv, f"http://127.0.0.1:{port}/"], timeout=secs + warmup + 30)
    return parse_h2load(out)


def parse_h2load(out: str) -> dict[str, Any]:
    fin = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    reqs = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    proto = re.search(r"Application protocol: (\S+)", out)
    if fin is None or reqs is None:
        raise RuntimeError(f"h2load: unexpected output: {out[-400:]}")
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    bad_status = int(status.group(3)) + int(status.group(4)) if status else 0
    done, ok = int(reqs.group(3)), int(reqs.group(4))
    if proto is None or proto.group(1) != "h2c":
        raise RuntimeError(f"h2load: did not negotiate h2c: {out[-400:]}")
    return {
        "rps": float(fin.group(1)),
        "requests": done,
        # "failed" already counts the errored and timed-out requests.
        "errors": int(reqs.group(5)) + bad_status,
        "succeeded": ok,
    }
