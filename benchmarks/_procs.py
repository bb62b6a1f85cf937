"""Processes, ports, readiness, memory and CPU accounting for the benchmark harness.

Every process the harness starts goes through :class:`Proc`: it runs in its own
session (so its process group holds it and every child it forks), pinned to a
core with ``taskset`` (children inherit the mask), with its output in a log
file. :meth:`Proc.stop` signals the whole group, so nothing outlives a run.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CpuShare",
    "ForeignCpu",
    "Proc",
    "ProcessFailed",
    "await_quiet",
    "cpu_share",
    "describe_foreign",
    "foreign_cpu",
    "free_ports",
    "group_cpu_ns",
    "group_memory_kib",
    "http_get",
    "require_tools",
    "wait_http_ok",
]

LOAD_CORE = 0
"""The load generator and the upstream run here."""
PROXY_CORE = 1
"""The proxy under test runs here."""


class ProcessFailed(RuntimeError):
    """A started process exited, or never became ready."""


def require_tools(names: Sequence[str]) -> None:
    """Fail clearly, naming every missing tool, before anything starts."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SystemExit(
            f"benchmarks: missing tools: {', '.join(missing)} "
            "(run `bash scripts/setup.sh` as root: it installs nginx-light, haproxy, wrk, "
            "nghttp2-client; cc comes from gcc)"
        )


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Proc:
    """A pinned process (and its children) in its own process group."""

    name: str
    argv: list[str]
    core: int
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Proc:
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                ["taskset", "-c", str(self.core), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if self.env is None else dict(self.env),
                cwd=self.cwd,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def check_alive(self) -> None:
        """Raise :class:`ProcessFailed` with the log's tail if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessFailed(
                f"{self.name} exited with status {self.popen.returncode}: {self.log_tail()}"
            )

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace`` seconds."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        _killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_pids(pgid):
            self.popen.poll()
            time.sleep(0.05)
        _killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        self.popen = None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def group_memory_kib(pgid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over the live processes of process group ``pgid``.

    RSS counts pages shared between forked workers once per process; PSS splits them.
    """
    rss = pss = 0
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss += int(rest.split()[0])
                elif key == "Pss":
                    pss += int(rest.split()[0])
    return rss, pss


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET to 127.0.0.1:``port``; returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http_ok(port: int, proc: Proc | None, timeout: float, path: str = "/") -> None:
    """Poll ``GET path`` until it answers 200.

    Raises:
        ProcessFailed: ``proc`` exited meanwhile, or no 200 within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check_alive()
        try:
            status, _ = http_get(port, path, timeout=1.0)
            if status == 200:
                return
            last = f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    tail = f"; log: {proc.log_tail()}" if proc is not None else ""
    raise ProcessFailed(f"no 200 from 127.0.0.1:{port}{path} within {timeout:.0f} s ({last}){tail}")


@dataclass(frozen=True)
class CpuShare:
    """Per-core busy share over an interval, in percent (softirq included)."""

    busy: dict[int, float]
    softirq: dict[int, float]


def _read_stat() -> dict[int, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            out[int(name[3:])] = [int(v) for v in vals]
    return out


@contextlib.contextmanager
def cpu_share() -> Iterator[dict[str, CpuShare]]:
    """Measure per-core busy share over the ``with`` block; read ``["share"]`` after it.

    Busy is everything but idle and iowait (user, nice, system, irq, softirq, steal).
    The kernel samples these at the 10 ms tick, so at light load (a few thousand
    req/s) they under-count short bursts of work; they are sound near saturation.
    """
    holder: dict[str, CpuShare] = {}
    before = _read_stat()
    yield holder
    after = _read_stat()
    busy, soft = {}, {}
    for cpu, vals in after.items():
        delta = [a - b for a, b in zip(vals, before[cpu], strict=True)]
        # guest and guest_nice (fields 8, 9) are already counted in user and nice.
        total = sum(delta[:8]) or 1
        idle = delta[3] + delta[4]
        busy[cpu] = round(100.0 * (total - idle) / total, 1)
        soft[cpu] = round(100.0 * delta[6] / total, 1)
    holder["share"] = CpuShare(busy=busy, softirq=soft)


def group_cpu_ns(pgid: int) -> int:
    """CPU time in ns used so far by every thread of process group ``pgid``.

    Read from ``/proc/PID/task/TID/schedstat`` (nanoseconds, not 10 ms ticks), so it
    is exact even at light load; time of threads that exited meanwhile is lost.
    """
    return sum(_task_cpu_ns(pid) for pid in _group_pids(pgid))


def _task_cpu_ns(pid: int) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(task.path, "schedstat").read_text().split()[0])
    return total


def _user_processes() -> dict[int, tuple[int, str]]:
    """pid -> (pgid, short command line) for every user-space process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == 2 or entry.name == "2":
                continue  # kernel threads (ksoftirqd carries our own loopback traffic)
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            out[int(entry.name)] = (int(fields[2]), " ".join(cmd.split())[:80])
    return out


@dataclass
class ForeignCpu:
    """CPU used by processes outside the harness, its upstream and its target."""

    pct: float = 0.0
    """Percent of one core, over the interval."""
    top: list[tuple[str, float]] = field(default_factory=list)
    """The biggest users: (command line, percent of one core)."""


@contextlib.contextmanager
def foreign_cpu(exclude_pgids: set[int]) -> Iterator[ForeignCpu]:
    """Measure CPU used by every other user-space process over the ``with`` block.

    On a shared machine another job on the proxy's core halves a proxy's figures
    while leaving no trace in the figures themselves: this makes it visible.
    """
    res = ForeignCpu()
    procs = {p: v for p, v in _user_processes().items() if v[0] not in exclude_pgids}
    before = {p: _task_cpu_ns(p) for p in procs}
    t0 = time.monotonic_ns()
    yield res
    wall = max(1, time.monotonic_ns() - t0)
    # Processes started meanwhile count in full; those that also ended meanwhile are missed.
    procs.update(
        {p: v for p, v in _user_processes().items() if v[0] not in exclude_pgids and p not in procs}
    )
    used = []
    for pid, (_, cmd) in procs.items():
        delta = _task_cpu_ns(pid) - before.get(pid, 0)
        if delta > 0:
            used.append((cmd, round(100.0 * delta / wall, 1)))
    used.sort(key=lambda u: -u[1])
    res.pct = round(sum(u[1] for u in used), 1)
    res.top = [u for u in used[:3] if u[1] >= 1.0]


def describe_foreign(f: ForeignCpu) -> str:
    return ", ".join(f"{cmd} {pct:.0f}%" for cmd, pct in f.top) or "(short-lived processes)"


def await_quiet(own_pgids: set[int], max_wait: float, limit: float) -> float:
    """Percent of a core other processes use now (sampled over 1 s).

    While that is ``limit`` or more, waits and samples again, for up to ``max_wait`` s.
    """
    deadline = time.monotonic() + max_wait
    while True:
        with foreign_cpu(own_pgids) as f:
            time.sleep(1.0)
        if f.pct < limit:
            return f.pct
        busy = f"other processes use {f.pct:.0f}% of a core: {describe_foreign(f)}"
        if time.monotonic() >= deadline:
            print(f"      WARNING: machine not quiet, {busy}", flush=True)
            return f.pct
        print(f"      waiting for quiet: {busy}", flush=True)
        time.sleep(4.0)
