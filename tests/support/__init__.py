"""Test support: real processes (sidecars, upstream servers) on loopback.

Every process started here is stopped by its fixture, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PY = sys.executable


_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, for a process the test starts next.

    Taken below the kernel's ephemeral range: a port from ``bind(0)`` can become the
    source port of some outgoing connection (an xDS stream, an upstream pool) before
    the process under test binds it, which failed a test with "address already in
    use". Never the same port twice in one test session.
    """
    high = _ephemeral_low()
    for _ in range(2000):
        port = random.randrange(10000, high)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port found in 10000-{high - 1}")


def wait_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def http_get(
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def send_all_read_all(port: int, data: bytes, timeout: float = 20.0) -> bytes:
    """A raw client: send ``data``, half-close, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def send_then_reset(port: int, raw: bytes, after: float = 0.1) -> None:
    """A client that sends ``raw``, waits ``after`` seconds and leaves with a TCP RST
    (SO_LINGER 0), as a client that gave up mid-request does."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(raw)
    time.sleep(after)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    admin_port: int = 0
    config: Path | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def start_echo(tmp: Path, name: str = "echo", port: int | None = None) -> Proc:
    port = port or free_port()
    log = tmp / f"echo-{name}-{port}.log"
    p = start([PY, str(HERE / "echo_server.py"), "--port", str(port), "--name", name], log)
    proc = Proc(p, log, port=port)
    try:
        wait_port(port, proc=p)
    except BaseException:
        proc.stop()
        raise
    return proc


def write_config(tmp: Path, text: str, name: str = "plait.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def sidecar_cmd(config: Path, *args: str) -> list[str]:
    return [
        PY,
        "-m",
        "plait.core.ops.cli",
        "--log-level",
        "info",
        "sidecar",
        "--config",
        str(config),
        *args,
    ]


def start_sidecar(
    config: Path, admin_port: int, *args: str, wait: bool = True, env: dict[str, str] | None = None
) -> Proc:
    log = config.with_suffix(f".{admin_port}.log")
    p = start(sidecar_cmd(config, *args), log, env)
    proc = Proc(p, log, admin_port=admin_port, config=config)
    if wait:
        ready_or_stopped(proc)
    return proc


def ready_or_stopped(proc: Proc, timeout: float = 15.0) -> None:
    """:func:`wait_ready`, and a sidecar that does not get ready is stopped before the
    error propagates (the caller never got it to clean up: it would outlive the test)."""
    try:
        wait_ready(proc, timeout)
    except BaseException:
        proc.stop()
        raise


def wait_ready(proc: Proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.popen.returncode}:\n{proc.logs()}")
        with contextlib.suppress(OSError):
            status, _, _ = http_get(proc.admin_port, "/ready", timeout=1)
            if status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"sidecar not ready after {timeout}s:\n{proc.logs()}")


def simple_config(
    upstream_port: int,
    listen_port: int,
    admin_port: int,
    protocol: str = "http",
    filters: str = "[]",
    extra: str = "",
    service_protocol: str | None = None,
) -> str:
    """One Service with one endpoint and one Sidecar egress listener to it."""
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: upstream}}
spec:
  ports: [{{name: main, port: 80, protocol: {service_protocol or protocol}}}]
  endpoints: [{{address: 127.0.0.1, port: {upstream_port}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: test}}
spec:
  admin: {{port: {admin_port}}}
  egress:
  - name: out
    port: {{number: {listen_port}, protocol: {protocol}}}
    service: upstream
    filters: {filters}
{extra}"""


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)


def start_mesh(
    tmp: Path,
    procs: list[Proc],
    *,
    filters: str = "[]",
    env: dict[str, str] | None = None,
    upstream: int | None = None,
    extra: str = "",
    args: tuple[str, ...] = (),
) -> tuple[int, Proc]:
    """An echo upstream (unless ``upstream`` is given) behind one sidecar listener
    (``args``: more command-line arguments for the sidecar).

    Returns the listener's port and the sidecar; both processes go into ``procs``.
    """
    if upstream is None:
        echo = start_echo(tmp)
        procs.append(echo)
        upstream = echo.port
    port, admin = free_port(), free_port()
    text = simple_config(upstream, port, admin, filters=filters) + extra
    sidecar = start_sidecar(write_config(tmp, text), admin, *args, env=env)
    procs.append(sidecar)
    return port, sidecar


def start_flaky(tmp: Path, name: str = "flaky", **state: float) -> Proc:
    """A controllable upstream (``flaky_server.py``): ``fail_every``, ``status``,
    ``delay_ms``, ``hang``, ``reset``, ``retry_after``; changed later with :func:`control`."""
    port = free_port()
    log = tmp / f"flaky-{name}-{port}.log"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in state.items()]
    p = start([PY, str(HERE / "flaky_server.py"), "--port", str(port), "--name", name, *flags], log)
    wait_port(port, proc=p)
    return Proc(p, log, port=port)


def control(port: int, clear: bool = False, **state: float) -> dict[str, Any]:
    """Change a flaky upstream's behaviour; returns its state and counts (then cleared if asked)."""
    query = "&".join([f"{k}={v}" for k, v in state.items()] + (["clear=1"] if clear else []))
    _, _, body = http_get(port, f"/__control?{query}")
    result: dict[str, Any] = json.loads(body)
    return result
