"""Access logs: one JSON line per request, with the mesh's failure reason."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    free_port,
    http_get,
    simple_config,
    start_echo,
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
