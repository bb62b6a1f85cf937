"""Access logs: one JSON line per request, with the mesh's failure reason."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.e2e._h2client import h2_request
from tests.e2e._resilience import metric
from tests.support import (
    Proc,
    free_port,
    http_get,
    send_then_reset,
    simple_config,
    start_echo,
    start_flaky,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e


def _lines(path: Path, n: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"expected {n} access log lines in {path}")


def test_one_json_line_per_request_with_failure_reasons(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    log = tmp_path / "access.log"
    port, admin, dead_port = free_port(), free_port(), free_port()
    text = simple_config(echo.port, port, admin) + f"  accessLog: {{path: {log}}}\n"
    procs.append(start_sidecar(write_config(tmp_path, text), admin))
    http_get(port, "/ok?x=1", headers={"x-request-id": "req-1"})
    http_get(port, "/status/503")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")  # refused by the codec: logged too
        s.recv(1024)
    entries = _lines(log, 3)
    first = entries[0]
    assert first["method"] == "GET" and first["path"] == "/ok?x=1" and first["status"] == 200
    assert first["request_id"] == "req-1" and first["listener"] == "out"
    assert first["upstream"] == f"127.0.0.1:{echo.port}" and first["failure_reason"] is None
    assert isinstance(first["duration_ms"], float)
    assert entries[1]["status"] == 503 and entries[1]["failure_reason"] is None  # the app's own 503
    assert entries[2]["status"] == 400 and entries[2]["failure_reason"] == "bad request"

    log2 = tmp_path / "dead.log"
    port2, admin2 = free_port(), free_port()
    text2 = simple_config(dead_port, port2, admin2) + f"  accessLog: {{path: {log2}}}\n"
    procs.append(start_sidecar(write_config(tmp_path, text2, "dead.yaml"), admin2))
    http_get(port2, "/")
    (entry,) = _lines(log2, 1)
    assert entry["status"] == 503 and entry["failure_reason"] == "upstream connect failure"


def test_every_stream_is_logged_whatever_ends_it(tmp_path: Path, procs: list[Proc]) -> None:
    """A client that leaves, an upstream that resets, and a stream the drain cancels:
    each gets exactly one line."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    flaky = start_flaky(tmp_path, reset=1)
    procs.append(flaky)
    log = tmp_path / "access.log"
    port, admin = free_port(), free_port()
    text = simple_config(echo.port, port, admin) + f"  accessLog: {{path: {log}}}\n"
    text += "  drainTimeout: 1s\n"
    sidecar = start_sidecar(write_config(tmp_path, text), admin)
    procs.append(sidecar)
    send_then_reset(port, b"GET /delay/5?left HTTP/1.1\r\nHost: x\r\n\r\n", after=0.3)
    port2, admin2 = free_port(), free_port()
    text2 = simple_config(flaky.port, port2, admin2) + f"  accessLog: {{path: {log}}}\n"
    procs.append(start_sidecar(write_config(tmp_path, text2, "reset.yaml"), admin2))
    assert http_get(port2, "/reset")[0] == 502
    drained: list[int] = []

    def slow(path: str) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            drained.append(http_get(port, path, timeout=10)[0])

    def slow_h2(path: str) -> None:
        with contextlib.suppress(OSError, AssertionError):
            drained.append(int(h2_request(port, [], b"", method="GET", path=path)[0][":status"]))

    threads = [
        threading.Thread(target=slow, args=(p,)) for p in ("/delay/0.3?quick", "/delay/8?stuck")
    ]
    threads.append(threading.Thread(target=slow_h2, args=("/delay/8?h2",)))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while metric(admin, "plait_connections_active") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the three clients are connected (their heads follow at once)
    time.sleep(0.1)
    sidecar.popen.send_signal(signal.SIGTERM)
    assert sidecar.popen.wait(10) == 0
    for t in threads:
        t.join(10)
    procs[-1].stop()
    entries = _lines(log, 5)
    by_path = {e.get("path"): e for e in entries}
    assert len(by_path) == len(entries) == 5, entries
    assert by_path["/delay/5?left"]["status"] == 0
    assert by_path["/delay/5?left"]["failure_reason"] == "client closed"
    assert by_path["/reset"]["status"] == 502
    assert by_path["/reset"]["failure_reason"] == "upstream reset"
    assert by_path["/delay/0.3?quick"]["status"] == 200
    for path in ("/delay/8?stuck", "/delay/8?h2"):
        stuck = by_path[path]
        assert stuck["status"] == 0 and stuck["failure_reason"] == "drain grace over", stuck
    assert drained == [200]  # the quick one finished during the drain


def test_a_client_that_leaves_mid_body_is_logged_as_closed(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Not as a bad request: the body was well framed, the client just went away."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    log = tmp_path / "access.log"
    port, admin = free_port(), free_port()
    text = simple_config(echo.port, port, admin) + f"  accessLog: {{path: {log}}}\n"
    procs.append(start_sidecar(write_config(tmp_path, text), admin))
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    send_then_reset(port, head + b"x" * 1000, after=0.3)
    (entry,) = _lines(log, 1)
    assert entry["path"] == "/upload" and entry["status"] == 0, entry
    assert entry["failure_reason"] == "client closed", entry
