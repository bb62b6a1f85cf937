"""``plait demo-static``: two services behind sidecars on loopback, static config.

What runs (ports from ``examples/demo/mesh.yaml``)::

    you ──► frontend sidecar :18080 ──► frontend app :18081
                                          │ calls http://127.0.0.1:18100 (its sidecar)
            frontend sidecar :18100 ──(90/10 route)──► backend sidecar :18201 / :18202
                                                          ──► backend v1 :18091 / v2 :18092

The apps are tiny standard-library HTTP servers in this process; the sidecars
are real ``plait sidecar`` processes. The demo sends requests through the whole
path and prints what each hop added, then stops everything (or keeps running
with ``--keep-running`` until Ctrl-C or SIGTERM, which stop everything the same way).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = [
    "Stopped",
    "apps",
    "failed",
    "get",
    "hold",
    "run_demo",
    "split",
    "stop_all",
    "stop_on_signals",
    "tour",
    "wait_ready",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "demo" / "mesh.yaml"


class _App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "app"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.name == "frontend":
            status, headers, body = get(18100, self.path, dict(self.headers.items()))
            payload = {"frontend": "called backend", "backend_status": status,
                       "backend_headers": headers, "backend": _json(body)}  # fmt: skip
        else:
            payload = {"app": self.name, "path": self.path,
                       "headers_seen": {k.lower(): v for k, v in self.headers.items()}}  # fmt: skip
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        hop = {"connection", "host", "content-length", "transfer-encoding"}
        conn.request("GET", path, headers={k: v for k, v in (headers or {}).items()
                                           if k.lower() not in hop})  # fmt: skip
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A sidecar closing a pooled keep-alive connection is normal, not an app error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def apps() -> Iterator[None]:
    servers: list[_AppServer] = []
    for name, port in (("frontend", 18081), ("backend-v1", 18091), ("backend-v2", 18092)):
        handler = type(f"App_{port}", (_App,), {"name": name})
        try:
            server = _AppServer(("127.0.0.1", port), handler)
        except OSError as exc:
            for started in servers:
                started.shutdown()
                started.server_close()
            raise OSError(exc.errno, f"the {name} app cannot listen on 127.0.0.1:{port}: "
                          f"{exc.strerror} (is a demo already running?)") from exc  # fmt: skip
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def _sidecars() -> Iterator[None]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plait.core.ops.cli",
                "--log-level",
                "warning",
                "sidecar",
                "--config",
                str(EXAMPLES),
                "--sidecar",
                name,
            ]
        )
        for name in ("frontend", "backend")
    ]
    try:
        for admin in (15000, 15100):
            wait_ready(admin, procs)
        yield
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate ``procs`` newest first, then wait for each (killed after 10 s)."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_ready(port: int, procs: list[subprocess.Popen[bytes]], path: str = "/ready") -> None:
    """Until ``GET path`` on ``port`` answers 200; raises if one of ``procs`` exits first."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a demo process exited during start-up (its output is above)")
        with contextlib.suppress(OSError):
            if get(port, path)[0] == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing ready on port {port} ({path})")


def split(requests: int) -> Counter[str]:
    """Which backend version served each of ``requests`` calls through the frontend's egress."""
    seen: Counter[str] = Counter()
    for i in range(requests):
        _, h, _ = get(18100, f"/split/{i}")
        seen[h.get("x-served-by", "?")] += 1
    return seen


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so every process the demo started is stopped."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP stop the demo as Ctrl-C does (each ``with`` cleans up)."""

    def stop(signum: int, _frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def hold(keep_running: bool, where: str) -> None:
    """``--keep-running``: say where to look and wait for Ctrl-C or SIGTERM; else say it stops."""
    if not keep_running:
        print("\ndone: stopping the mesh (run with --keep-running to keep it up and explore)")
        return
    with contextlib.suppress(KeyboardInterrupt):
        print(f"\nrunning; {where}\nCtrl-C (or SIGTERM) stops everything", flush=True)
        while True:
            time.sleep(1)


def run_demo(*, requests: int = 20, keep_running: bool = False) -> int:
    print(f"plait demo: config {EXAMPLES}")
    try:
        with stop_on_signals(), apps(), _sidecars():
            print("sidecars ready: frontend (admin :15000), backend (admin :15100)\n")
            tour(requests)
            hold(keep_running, "try http://127.0.0.1:18080/hello, admin http://127.0.0.1:15000/"
                 "config_dump and /metrics (backend: 15100)")  # fmt: skip
    except KeyboardInterrupt as exc:
        print(f"stopped ({exc or 'Ctrl-C'}): every demo process ended", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, TimeoutError) as exc:
        return failed(exc)
    return 0


def failed(exc: BaseException) -> int:
    """A demo that could not run: one line saying why (the processes' log is above)."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    print(f"plait demo: {why}", file=sys.stderr)
    return 1


def tour(requests: int) -> None:
    """Send the demo's requests through the mesh and print what each hop did."""
    status, _headers, body = get(18080, "/hello", {"x-debug": "secret"})
    reply = json.loads(body)
    seen = reply["backend"]["headers_seen"]
    print("1. GET http://127.0.0.1:18080/hello  (you → frontend sidecar → frontend app")
    print("   → frontend sidecar egress → backend sidecar → backend app)")
    print(
        f"   status {status}; backend answered {reply['backend_status']} from "
        f"{reply['backend_headers'].get('x-served-by')}"
    )
    print(
        f"   headers the backend app saw: x-caller={seen.get('x-caller')} "
        f"x-route={seen.get('x-route')} x-debug={seen.get('x-debug', '(removed)')}"
    )
    print(
        f"   response header added on the way back: x-mesh="
        f"{reply['backend_headers'].get('x-mesh')}\n"
    )
    versions = split(requests)
    print(f"2. {requests} requests split by the HTTPRoute (weights 90/10): {dict(versions)}")
    _, h, _ = get(18100, "/canary", {"x-canary": "1"})
    print(f"3. with x-canary: 1 the canary-header rule picks: {h.get('x-served-by')}")
    status, h, body = get(18100, "/admin/secrets")
    print(f"4. GET /admin/secrets: {status} ({body.decode().strip()}) — path-deny filter\n")
    _, _, metrics = get(15000, "/metrics")
    lines = [ln for ln in metrics.decode().splitlines() if ln.startswith("plait_requests_total")]
    print("frontend sidecar /metrics:\n  " + "\n  ".join(lines))
