"""``plait sidecar --workers N``: N sidecar processes behind one admin API.

Each worker is a full sidecar (``plait sidecar --worker-index i``) that binds
every listener with ``SO_REUSEPORT`` (the kernel spreads connections) and serves
its own admin API on a private unix socket. This supervisor:

* serves the configured admin port: ``/ready`` is 200 only when every worker is
  ready; ``/metrics`` is the *sum* of the workers' counters (read from their
  ``/stats.json`` and rendered by the same collector, so the families are the
  same as with one worker); ``/config_dump`` is worker 0's plus the worker list;
  ``/tap`` opens the tap on every worker and merges the lines (``_tap.py``);
  ``POST /quitquitquit`` drains them all;
* forwards SIGTERM/SIGINT/SIGHUP to every worker and exits when all have exited,
  with the worst exit code.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio.abc import Process

from ..metrics import Stats
from ._tap import fan_in
from .admin import NOT_FOUND, Reply, StreamReply, json_reply, metrics_text, serve_http

__all__ = ["supervise"]

log = logging.getLogger(__name__)


async def _get(sock: Path, path: str) -> tuple[int, bytes]:
    """One GET over a worker's admin socket; (0, b"") if it does not answer."""
    try:
        with anyio.fail_after(5):
            async with await anyio.connect_unix(sock) as stream:
                await stream.send(
                    f"GET {path} HTTP/1.1\r\nhost: worker\r\nconnection: close\r\n\r\n".encode()
                )
                data = b""
                while True:
                    try:
                        data += await stream.receive()
                    except anyio.EndOfStream:
                        break
    except (OSError, TimeoutError, anyio.BrokenResourceError):
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


class _SupervisorAdmin:
    def __init__(self, procs: Sequence[Process], sockets: Sequence[Path]) -> None:
        self.procs = procs
        self.sockets = sockets

    async def __call__(self, method: str, target: str) -> Reply | StreamReply:
        path, _, query = target.partition("?")
        if path == "/tap":
            try:
                return StreamReply("application/x-ndjson", fan_in(self.sockets, query))
            except ValueError as exc:
                return 400, "text/plain", f"{exc}\n".encode()
        if path == "/ready":
            codes = [(await _get(s, "/ready"))[0] for s in self.sockets]
            ready = all(c == 200 for c in codes)
            return (200 if ready else 503), "text/plain", f"workers: {codes}\n".encode()
        if path == "/metrics":
            stats = Stats()
            for sock in self.sockets:
                status, body = await _get(sock, "/stats.json")
                if status == 200:
                    stats.add_json(json.loads(body))
            return 200, "text/plain; version=0.0.4", metrics_text(stats)
        if path == "/certs":  # every worker loads the same identity files
            status, body = await _get(self.sockets[0], "/certs")
            return (status or 503), "application/json", body
        if path == "/config_dump":
            status, body = await _get(self.sockets[0], "/config_dump")
            dump = json.loads(body) if status == 200 else {}
            dump["workers"] = [{"index": i, "pid": p.pid} for i, p in enumerate(self.procs)]
            return json_reply(dump)
        if path == "/quitquitquit":
            if method != "POST":
                return 405, "text/plain", b"use POST\n"
            self.signal_all(signal.SIGTERM)
            return 200, "text/plain", b"draining\n"
        return NOT_FOUND

    def signal_all(self, signum: signal.Signals) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signum)


async def supervise(
    worker_cmd: Sequence[str], workers: int, admin_host: str, admin_port: int
) -> int:
    """Run ``workers`` copies of ``worker_cmd`` (plus per-worker flags) until all exit."""
    run_dir = Path(tempfile.mkdtemp(prefix="plait-workers-"))
    sockets = [run_dir / f"worker-{i}.sock" for i in range(workers)]
    procs: list[Process] = []
    try:
        for i, sock in enumerate(sockets):
            cmd = [
                *worker_cmd,
                "--reuse-port",
                "--worker-index",
                str(i),
                "--admin-socket",
                str(sock),
            ]
            procs.append(await anyio.open_process(cmd, stdin=None, stdout=None, stderr=None))
        admin = _SupervisorAdmin(procs, sockets)
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: serve_http(
                admin, host=admin_host, port=admin_port, task_status=task_status))  # fmt: skip
            tg.start_soon(_forward_signals, admin)
            for proc in procs:
                await proc.wait()
            tg.cancel_scope.cancel()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                with anyio.CancelScope(shield=True):
                    await proc.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
    codes = [p.returncode or 0 for p in procs]
    return max(codes, key=abs) if codes else 0


async def _forward_signals(admin: _SupervisorAdmin) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("forwarding %s to %d workers", signal.Signals(signum).name, len(admin.procs))
            admin.signal_all(signal.Signals(signum))
