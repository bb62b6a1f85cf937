"""Open-loop latency at a fixed rate: builds and runs ``loadgen/openloop.c``.

The C source is compiled with ``cc -O2`` on first use into a cache directory
keyed by the source's hash (``$XDG_CACHE_HOME/plait-bench``, else
``~/.cache/plait-bench``), so an edited source is rebuilt and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ._procs import LOAD_CORE

__all__ = ["build_openloop", "run_openloop"]

SOURCE = Path(__file__).resolve().parent / "loadgen" / "openloop.c"


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "plait-bench"


def build_openloop() -> Path:
    """The compiled generator, building it if the cached binary is missing or stale."""
    src = SOURCE.read_bytes()
    binary = _cache_dir() / f"openloop-{hashlib.sha256(src).hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    res = subprocess.run(
        ["cc", "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)],
        check=False,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"benchmarks: compiling {SOURCE} failed:\n{res.stderr}")
    tmp.replace(binary)
    return binary


def run_openloop(
    binary: Path,
    port: int,
    rate: int,
    *,
    duration: float,
    warmup: float,
    connections: int = 32,
) -> dict[str, Any]:
    """Send GET / at ``rate`` req/s on a uniform grid for ``warmup + duration`` seconds.

    Returns the generator's JSON: latency percentiles in microseconds from the
    actual send time (``latency_us.send``) and from the scheduled time
    (``latency_us.sched``, coordinated-omission corrected), the scheduling slip,
    and error counts. Samples from the warm-up are discarded.
    """
    argv = [
        "taskset", "-c", str(LOAD_CORE), str(binary),
        "-p", str(port), "-r", str(rate), "-d", str(duration),
        "-w", str(warmup), "-c", str(connections), "-g", "2",
    ]  # fmt: skip
    res = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=duration + warmup + 30
    )
    if res.returncode != 0:
        raise RuntimeError(f"openloop exited {res.returncode}: {res.stderr.strip()[-400:]}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out
