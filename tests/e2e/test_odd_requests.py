"""Odd method/upgrade combinations from a client (HTTP/1.1 raw bytes, HTTP/2 frames):
a proper answer, never a traceback in the sidecar's log."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    free_port,
    http_get,
    send_all_read_all,
    simple_config,
    start_echo,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e


def _status(port: int, data: bytes) -> tuple[int, bytes]:
    """Send one request; the status of the answer and the whole answer."""
    out = send_all_read_all(port, data, timeout=10)
    assert out.startswith(b"HTTP/1.1 "), out[:300]
    return int(out[9:12]), out


ODD = {
    "connect": (b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", {501}),
    "connect-upgrade": (
        b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
        b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        {501},
    ),
    "connect-with-body": (
        b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 5\r\n\r\nhello",
        {400, 501},
    ),
    "options-asterisk": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", {200, 404, 501}),
    "unknown-upgrade": (
        b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: nosuch/9\r\n\r\n",
        {200},  # the upstream ignores the upgrade: an ordinary response
    ),
    "upgrade-with-body": (
        b"POST /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        {200, 400, 501},
    ),
    "trace": (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", {200, 405, 501}),
    "upgrade-chunked-body": (
        b"POST /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        {200, 400, 501},
    ),
    "upgrade-expect-continue": (
        b"POST /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        {200, 400, 417, 501},
    ),
    "http10-upgrade-with-body": (  # llhttp ends such a message at its head: refused
        b"POST /u HTTP/1.0\r\nHost: x\r\nConnection: keep-alive, upgrade\r\n"
        b"Upgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        {400},
    ),
    "http10-upgrade": (
        b"GET /u HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        {200},
    ),
    "h2c-upgrade": (
        b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        {200},
    ),
}


@pytest.mark.parametrize(("raw", "expected"), ODD.values(), ids=ODD.keys())
def test_odd_requests_get_a_status_and_no_traceback(
    tmp_path: Path, procs: list[Proc], raw: bytes, expected: set[int]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    status, out = _status(port, raw)
    assert status in expected, out[:300]
    if b"x-plait-reason: " in out.lower():  # the mesh answered: never "internal error"
        assert b"x-plait-reason: internal error" not in out.lower(), out[:300]
    assert http_get(port, "/still-alive")[0] == 200
    logs = sidecar.logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


def test_http2_connect_gets_501_and_no_traceback(tmp_path: Path, procs: list[Proc]) -> None:
    import h2.config
    import h2.connection
    import h2.events

    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(conn.data_to_send())
        conn.send_headers(1, [(":method", "CONNECT"), (":authority", "127.0.0.1:9")])
        s.sendall(conn.data_to_send())
        status = None
        while status is None:
            chunk = s.recv(65536)
            assert chunk, "closed without an answer"
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                assert not isinstance(ev, h2.events.StreamReset), ev
            s.sendall(conn.data_to_send())
    assert status == b"501"
    logs = sidecar.logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
           b"PATCH", b"PROPFIND", b"FOO"]  # fmt: skip
UPGRADES = [b"", b"Connection: upgrade\r\nUpgrade: websocket\r\n",
            b"Connection: upgrade\r\nUpgrade: nosuch\r\n", b"Upgrade: websocket\r\n"]  # fmt: skip
BODIES = [b"", b"Content-Length: 5\r\n\r\nhello", b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]


def test_every_method_upgrade_and_body_combination_is_answered(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    for method, upgrade, body, version in itertools.product(
        METHODS, UPGRADES, BODIES, (b"HTTP/1.1", b"HTTP/1.0")
    ):
        target = b"127.0.0.1:9" if method == b"CONNECT" else b"/odd"
        raw = b"%s %s %s\r\nHost: x\r\n%s" % (method, target, version, upgrade)
        raw += body or b"\r\n"
        status, out = _status(port, raw)
        assert 200 <= status <= 599, (raw, out[:300])
        assert b"x-plait-reason: internal error" not in out.lower(), (raw, out[:300])
    logs = sidecar.logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs
