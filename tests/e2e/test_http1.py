"""Real HTTP/1.1 clients (curl, http.client) through a real sidecar to a real upstream."""

from __future__ import annotations

import json
import socket
import subprocess
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


@pytest.fixture
def mesh(tmp_path: Path, procs: list[Proc]) -> tuple[Proc, Proc, int]:
    echo = start_echo(tmp_path, "app")
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    return echo, sidecar, port


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=False
    )


def test_curl_http11_get(mesh: tuple[Proc, Proc, int]) -> None:
    _, _, port = mesh
    r = curl("--http1.1", "-i", f"http://127.0.0.1:{port}/hello?x=1", "-H", "x-test: yes")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert "x-served-by: app" in head.lower()
    echo = json.loads(body)
    assert echo["path"] == "/hello?x=1"
    assert echo["headers"]["x-test"] == "yes"
    assert echo["headers"]["host"] == f"127.0.0.1:{port}"


def test_curl_http2_prior_knowledge(mesh: tuple[Proc, Proc, int]) -> None:
    _, _, port = mesh
    r = curl("--http2-prior-knowledge", "-i", f"http://127.0.0.1:{port}/h2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 200")
    body = r.stdout.partition("\n\n")[2]
    assert json.loads(body)["path"] == "/h2"


def test_post_bodies_both_framings(mesh: tuple[Proc, Proc, int]) -> None:
    _, _, port = mesh
    payload = "a" * 100_000
    r = curl("--http1.1", "-X", "POST", "--data-binary", payload, f"http://127.0.0.1:{port}/post")
    assert json.loads(r.stdout)["body"] == payload
    r = subprocess.run(
        [
            "curl",
            "-sS",
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{port}/chunked",
        ],
        input="hello chunked world",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert json.loads(r.stdout)["body"] == "hello chunked world"


def test_large_and_streamed_responses(mesh: tuple[Proc, Proc, int]) -> None:
    _, _, port = mesh
    status, _, body = http_get(port, "/big/3000000")
    assert status == 200 and len(body) == 3_000_000
    status, _headers, body = http_get(port, "/stream/50")
    assert status == 200
    assert body.decode().splitlines() == [f"chunk {i}" for i in range(50)]


def test_keep_alive_many_requests_one_connection(mesh: tuple[Proc, Proc, int]) -> None:
    import http.client

    _, _, port = mesh
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(200):
        conn.request("GET", f"/n/{i}")
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["path"] == f"/n/{i}"
    conn.request("HEAD", "/head")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    conn.close()


def test_expect_100_continue(mesh: tuple[Proc, Proc, int]) -> None:
    _, _, port = mesh
    r = curl(
        "--http1.1",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "x" * 5000,
        f"http://127.0.0.1:{port}/expect",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body"] == "x" * 5000


def test_upstream_refusing_connections_gives_503_with_reason(
    tmp_path: Path, procs: list[Proc]
) -> None:
    dead, port, admin = free_port(), free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(dead, port, admin)), admin)
    procs.append(sidecar)
    status, headers, _body = http_get(port, "/")
    assert status == 503
    assert headers["x-plait-reason"] == "upstream connect failure"
    # and the sidecar keeps serving
    assert http_get(port, "/")[0] == 503


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
    ids=["malformed-request-line", "cl-and-te", "duplicate-differing-cl", "headers-too-large"],
)
def test_bad_requests_are_refused(
    mesh: tuple[Proc, Proc, int], request_bytes: bytes, status: int
) -> None:
    _echo, _, port = mesh
    out = _raw(port, request_bytes)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:200]
    assert b"connection: close" in out.lower()
    assert http_get(port, "/still-alive")[0] == 200


def test_request_header_timeout_gives_408_and_closes(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    text = simple_config(echo.port, port, admin).replace(
        "    filters: []", "    filters: []\n    timeouts: {requestHeaders: 1s}"
    )
    procs.append(start_sidecar(write_config(tmp_path, text), admin))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        elapsed = time.monotonic() - t0
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 0.8 < elapsed < 3.5
