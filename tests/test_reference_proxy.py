"""The harness's reference proxy (benchmarks/reference_proxy.py) relays HTTP/1.1 correctly.

The proxy runs as the harness runs it (its own process) in front of a real threaded
HTTP/1.1 upstream that reports, with every answer, the source port of the connection
it came on: one port across requests means the proxy reused its upstream connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import PY, Proc, free_port, http_get, start, wait_port

REPO = Path(__file__).resolve().parent.parent
CHUNKS = [b"first chunk\n", b"x" * 5000, b"last\n"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return out
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _any(self) -> None:
        body = self._body()
        peer = str(self.client_address[1])
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-peer-port", peer)
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        echo = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("latin-1"),
        }
        out = json.dumps(echo).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.send_header("x-peer-port", peer)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_HEAD = _any


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _start_proxy(tmp: Path, upstream_port: int) -> Proc:
    port = free_port()
    argv = [PY, "-m", "benchmarks.reference_proxy", "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", f"127.0.0.1:{upstream_port}"]
    log = tmp / f"reference-{port}.log"
    proc = Proc(start(argv, log, env={"PYTHONPATH": str(REPO)}), log, port=port)
    try:
        wait_port(port, proc=proc.popen)
    except BaseException:
        proc.stop()
        raise
    return proc


@pytest.fixture(scope="module")
def proxy(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc = _start_proxy(tmp_path_factory.mktemp("reference"), upstream)
    yield proc.port
    assert proc.stop() is not None


def _echo(body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(body)
    return out


def test_relays_a_get_with_its_headers(proxy: int) -> None:
    status, headers, body = http_get(proxy, "/a/path?q=1", headers={"x-test": "yes"})
    assert status == 200
    echo = _echo(body)
    assert (echo["method"], echo["path"]) == ("GET", "/a/path?q=1")
    assert echo["headers"]["x-test"] == "yes"
    assert int(headers["content-length"]) == len(body)


def test_relays_a_post_body_with_content_length(proxy: int) -> None:
    payload = b"name=plait&" + b"y" * 20_000
    status, _, body = http_get(proxy, "/form", method="POST", body=payload)
    echo = _echo(body)
    assert (status, echo["method"], echo["body"].encode()) == (200, "POST", payload)
    assert echo["headers"]["content-length"] == str(len(payload))


def test_relays_a_chunked_request_body(proxy: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    try:
        conn.request("POST", "/up", body=iter([b"abc", b"d" * 3000, b"ef"]), encode_chunked=True)
        r = conn.getresponse()
        echo = _echo(r.read())
    finally:
        conn.close()
    assert r.status == 200
    assert echo["headers"]["transfer-encoding"] == "chunked"
    assert echo["body"] == "abc" + "d" * 3000 + "ef"


def test_relays_a_chunked_response(proxy: int) -> None:
    status, headers, body = http_get(proxy, "/chunked")
    assert (status, headers["transfer-encoding"]) == (200, "chunked")
    assert body == b"".join(CHUNKS)


def test_keeps_both_connections_alive_and_reuses_the_upstream_one(proxy: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    peers, socks = set(), set()
    try:
        for path in ("/one", "/chunked", "/two", "/three"):
            conn.request("POST" if path == "/two" else "GET", path, body=b"z" * 10)
            r = conn.getresponse()
            r.read()
            assert (r.status, r.will_close) == (200, False)
            peers.add(r.headers["x-peer-port"])
            socks.add(id(conn.sock))
    finally:
        conn.close()
    assert len(socks) == 1, "the client connection was closed between requests"
    assert len(peers) == 1, f"upstream connections used: {sorted(peers)}"
    # The pool hands the idle upstream connection to the next client.
    _, headers, _ = http_get(proxy, "/again")
    assert {headers["x-peer-port"]} == peers


def _read_response(f: Any) -> tuple[int, bytes]:
    status = int(f.readline().split()[1])
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, f.read(length)


def test_answers_pipelined_requests_in_order(proxy: int) -> None:
    raw = b"".join(
        b"GET /p%d HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % (i, i) for i in range(3)
    )
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as s:
        s.sendall(raw)
        f = s.makefile("rb")
        answers = [_read_response(f) for _ in range(3)]
    assert [(st, _echo(b)["path"], _echo(b)["body"]) for st, b in answers] == [
        (200, f"/p{i}", str(i)) for i in range(3)
    ]


def test_head_answer_has_no_body_and_the_connection_goes_on(proxy: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    try:
        conn.request("HEAD", "/h")
        r = conn.getresponse()
        assert (r.status, r.read(), r.will_close) == (200, b"", False)
        assert int(r.headers["content-length"]) > 0
        conn.request("GET", "/after-head")
        r = conn.getresponse()
        assert _echo(r.read())["path"] == "/after-head"
    finally:
        conn.close()


def test_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    proc = _start_proxy(tmp_path, free_port())
    try:
        status, headers, _ = http_get(proc.port, "/")
    finally:
        proc.stop()
    assert (status, headers["connection"]) == (502, "close")


def test_relays_an_interim_100_continue_then_the_answer(proxy: int) -> None:
    head = b"POST /expect HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as s:
        s.sendall(head)
        f = s.makefile("rb")
        assert f.readline().split()[1] == b"100"
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        status, body = _read_response(f)
    assert (status, _echo(body)["body"]) == (200, "hello")
