"""A sidecar's ``GET /tap`` admin stream, on one process and across ``--workers``.

Real sidecars (file config), an echo upstream, the tap read with ``http.client``
(chunked JSON lines) as any HTTP client would.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

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


def _open_tap(admin: int, query: str) -> tuple[http.client.HTTPConnection, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=15)
    conn.request("GET", f"/tap?{query}")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    assert json.loads(resp.readline()) == {"started": True}  # the watcher is in place
    return conn, resp


def _lines(resp: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


@pytest.mark.parametrize("workers", [1, 2])
def test_tap_sees_every_request_of_every_worker_and_ends_at_max(
    tmp_path: Path, procs: list[Proc], workers: int
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    extra = ("--workers", str(workers)) if workers > 1 else ()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin,
                            *extra)  # fmt: skip
    procs.append(sidecar)
    conn, resp = _open_tap(admin, "max=40")
    for i in range(40):  # a new connection each: the kernel spreads them over the workers
        assert http_get(port, f"/r/{i}")[0] == 200
    records = _lines(resp)  # the stream ends after max records
    conn.close()
    assert sorted(r["path"] for r in records) == sorted(f"/r/{i}" for i in range(40))
    assert {(r["listener"], r["direction"], r["status"]) for r in records} == {
        ("out", "outbound", 200)
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_tap_query_is_refused_with_what_was_expected(
    tmp_path: Path, procs: list[Proc], workers: int
) -> None:
    port, admin = free_port(), free_port()
    extra = ("--workers", str(workers)) if workers > 1 else ()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(free_port(), port, admin)),
                            admin, *extra)  # fmt: skip
    procs.append(sidecar)
    status, _, body = http_get(admin, "/tap?status=6xx")
    assert status == 400 and b"expected a code (503) or a class (5xx)" in body
    status, _, body = http_get(admin, "/tap?max=ten")
    assert status == 400 and b"expected a whole number" in body


def test_a_tap_client_that_vanishes_mid_stream_leaves_the_admin_serving(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The client resets its connection while the sidecar is blocked sending to it."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    for _ in range(3):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", admin))
        s.sendall(b"GET /tap HTTP/1.1\r\nhost: x\r\n\r\n")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(1500):  # more than the socket buffers hold: the sidecar waits to send
            conn.request("GET", f"/{i}")
            conn.getresponse().read()
        conn.close()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset
        time.sleep(0.2)
        assert http_get(admin, "/ready")[0] == 200
    tap_conn, resp = _open_tap(admin, "max=1")
    assert http_get(port, "/after")[0] == 200
    assert [r["path"] for r in _lines(resp)] == ["/after"]
    tap_conn.close()
