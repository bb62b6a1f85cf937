"""The exchange driven from HTTP/1.1 callbacks: order, completion, hand-over, drain.

Every request here that finds a warm upstream connection is answered in callbacks
(``core/exchange/driver.py``: ``Inline``); the first on a cold pool, and anything
that must be awaited, is handed over to a task. The tests pin the invariants of
that module's docstring on a real sidecar.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    http_get,
    send_then_reset,
    start_mesh,
)

pytestmark = pytest.mark.e2e


def _mesh(
    tmp_path: Path,
    procs: list[Proc],
    env: dict[str, str],
    upstream: int | None = None,
    extra: str = "",
) -> tuple[int, Path, Proc]:
    log = tmp_path / "complete.log"
    filters = f"[{{type: test-complete, config: {{path: '{log}'}}}}]"
    port, sidecar = start_mesh(
        tmp_path, procs, filters=filters, env=env, upstream=upstream, extra=extra
    )
    return port, log, sidecar


def _completions(log: Path, n: int) -> list[tuple[str, str, int]]:
    """(calls-on-instance, path, status) per on_stream_complete, once ``n`` arrived."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= n:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # a double call would show up by now
    lines = log.read_text().splitlines() if log.exists() else []
    return [(p[1], p[2], int(p[3])) for p in (line.split() for line in lines)]


def _read_responses(sock: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """``n`` content-length framed responses from ``sock``: (status, body)."""
    buf, out = b"", list[tuple[int, bytes]]()
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(v)
            for k, _, v in (x.partition(b":") for x in lines[1:])
            if k.lower() == b"content-length"
        )
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        out.append((int(lines[0].split()[1]), buf[:length]))
        buf = buf[length:]
    return out


def test_pipelined_requests_answered_in_order(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    port, log, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200  # a pooled upstream connection for the inline path
    paths = ["/delay/0.2", "/a", "/delay/0.1", "/b", "/c"]
    raw = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        got = _read_responses(s, len(paths))
        # and one more after the pipeline drained, on the same connection
        s.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        got += _read_responses(s, 1)
    assert [status for status, _ in got] == [200] * 6
    assert [json.loads(body)["path"] for _, body in got] == [*paths, "/after"]
    done = _completions(log, 7)
    assert sorted(p for _, p, _ in done) == sorted(["/warm", *paths, "/after"])
    assert {calls for calls, _, _ in done} == {"1"}


def test_client_abort_while_inline_waits_completes_once_and_drains(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    port, log, sidecar = _mesh(tmp_path, procs, plugin_env, extra="  drainTimeout: 4s\n")
    assert http_get(port, "/warm")[0] == 200
    for _ in range(3):  # RST while the exchange waits for the upstream
        send_then_reset(port, b"GET /delay/0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    done = _completions(log, 4)
    assert sorted(p for _, p, _ in done) == ["/delay/0.5"] * 3 + ["/warm"]
    assert {calls for calls, _, _ in done} == {"1"}
    assert http_get(port, "/still")[0] == 200
    # the stream accounting is balanced: a drain has nothing to wait for
    t0 = time.monotonic()
    sidecar.popen.send_signal(signal.SIGTERM)
    assert sidecar.popen.wait(10) == 0
    assert time.monotonic() - t0 < 2.0


def test_sigterm_waits_for_inline_exchange(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    port, _, sidecar = _mesh(tmp_path, procs, plugin_env, extra="  drainTimeout: 4s\n")
    assert http_get(port, "/warm")[0] == 200
    result: list[tuple[int, dict[str, str]]] = []
    t = threading.Thread(target=lambda: result.append(http_get(port, "/delay/0.6")[:2]))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    sidecar.popen.send_signal(signal.SIGTERM)
    t.join(10)
    assert sidecar.popen.wait(10) == 0
    assert 0.3 < time.monotonic() - t0 < 2.5
    assert result and result[0][0] == 200
    assert result[0][1].get("connection") == "close"


@contextlib.contextmanager
def _flaky_upstream() -> Iterator[int]:
    """An HTTP/1.1 keep-alive upstream. ``/r…`` after the first request on a connection
    closes it unanswered (a stale keep-alive); ``/die`` closes without answering;
    ``/info`` sends a 103 first; ``/stream`` is chunked and ends 0.5 s after its head."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def conn_loop(c: socket.socket) -> None:
        with c:
            served = 0
            while True:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                if buf.startswith(b"GET /die") or (served and buf.startswith(b"GET /r")):
                    return  # close without answering
                served += 1
                if buf.startswith(b"GET /stream"):  # chunked, its end 0.5 s after the head
                    c.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    c.sendall(b"5\r\nfirst\r\n")
                    time.sleep(0.5)
                    c.sendall(b"4\r\nlast\r\n0\r\n\r\n")
                    continue
                if buf.startswith(b"GET /info"):  # a 1xx first, the response in a later read
                    c.sendall(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n")
                    time.sleep(0.05)
                body = b'{"ok": true}'
                c.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )

    def accept_loop() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=conn_loop, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        srv.close()


def test_stale_pooled_connection_is_retried_and_dead_upstream_is_502(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    with _flaky_upstream() as upstream:
        port, log, _ = _mesh(tmp_path, procs, plugin_env, upstream=upstream)
        for i in range(6):  # every request after the first reuses a connection that goes stale
            status, _, body = http_get(port, f"/r{i}")
            assert status == 200, body
        status, headers, _ = http_get(port, "/die")
        assert status == 502
        assert headers["x-plait-reason"] == "upstream reset"
        assert http_get(port, "/info")[0] == 200  # promoted on the 1xx
        # a streamed response is not held inline until it ends: its head goes out at once
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t0 = time.monotonic()
        conn.request("GET", "/stream")
        r = conn.getresponse()
        head_after = time.monotonic() - t0
        assert r.status == 200 and r.read() == b"firstlast"
        conn.close()
        assert head_after < 0.4
        done = _completions(log, 9)
    paths = [f"/r{i}" for i in range(6)] + ["/die", "/info", "/stream"]
    assert sorted(p for _, p, _ in done) == sorted(paths)
    assert {calls for calls, _, _ in done} == {"1"}
    assert [s for _, p, s in done if p == "/die"] == [502]


def test_whole_streamed_and_whole_requests_in_one_segment_answered_in_order(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    """A whole GET (answered in callbacks), a chunked POST (its body streams, so the
    request loop takes it) and another GET, pipelined in one write."""
    port, log, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200
    raw = (
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        got = _read_responses(s, 3)
    echoed = [json.loads(body) for _, body in got]
    assert [status for status, _ in got] == [200] * 3
    assert [e["path"] for e in echoed] == ["/one", "/two", "/three"]
    assert echoed[1]["body"] == "hello world"
    assert len(_completions(log, 4)) == 4


@pytest.mark.parametrize(
    "first",
    [
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n",  # answered in callbacks
        b"POST /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ],
    ids=["whole", "streamed"],
)
def test_request_asking_to_close_is_answered_behind_another(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str], first: bytes
) -> None:
    """A request with ``Connection: close`` queued behind another is still answered, and
    the connection closes after its response: one pipelined after it is never read."""
    port, _, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200
    raw = (
        first
        + b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        + b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        got = _read_responses(s, 2)
        assert s.recv(65536) == b""  # closed after the second response
    assert [json.loads(body)["path"] for _, body in got] == ["/one", "/two"]


@pytest.mark.parametrize(
    "first",
    [
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /delay/0.2 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    ],
    ids=["whole", "slow", "body"],
)
def test_pipelined_requests_then_half_close_are_all_answered(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str], first: bytes
) -> None:
    """A client that writes its requests and then shuts down its sending side (as
    ``nc -N`` does) gets every answer before the connection closes, as from nginx."""
    port, _, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first + b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        got = _read_responses(s, 2)
        assert s.recv(65536) == b""
    assert [json.loads(body)["path"] for _, body in got] == [first.split()[1].decode(), "/two"]


def test_request_before_a_malformed_one_is_answered_then_400(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    port, _, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\n\x01\r\n\r\n")
        got = _read_responses(s, 2)
        assert s.recv(65536) == b""
    assert [status for status, _ in got] == [200, 400]
    assert json.loads(got[0][1])["path"] == "/one"


def test_requests_written_one_byte_at_a_time(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    """The request that completes in its last byte's callback is answered there; the
    next one, also a byte at a time, on the same connection."""
    port, log, _ = _mesh(tmp_path, procs, plugin_env)
    assert http_get(port, "/warm")[0] == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = []
        for path in ("/first", "/second"):
            for byte in f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode():
                s.sendall(bytes([byte]))
                time.sleep(0.001)
            got += _read_responses(s, 1)
    assert [status for status, _ in got] == [200, 200]
    assert [json.loads(body)["path"] for _, body in got] == ["/first", "/second"]
    assert len(_completions(log, 3)) == 3
