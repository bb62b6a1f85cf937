"""The API's HTTP/1.1 layer against hostile input, from outside: raw bytes over real TLS.

Each case checks the status the client reads and that the server still answers the next
connection (a bad request must not take the API down).
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from plait.controlplane.api import _http

from .conftest import Server

Answer = tuple[int, dict[str, str], bytes]


def _connect(server: Server) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return server.tls.wrap_socket(raw, server_hostname="127.0.0.1")


def _responses(sock: ssl.SSLSocket, count: int) -> list[Answer]:
    """``count`` whole responses (status, lower-case headers, body), or fewer if it closes."""
    out: list[Answer] = []
    buf = b""
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return out
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed mid-body"
            buf += chunk
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return out


def _exchange(server: Server, data: bytes, count: int = 1) -> list[Answer]:
    with _connect(server) as sock:
        sock.sendall(data)
        return _responses(sock, count)


def _still_serving(server: Server) -> None:
    [(status, _, body)] = _exchange(server, b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n")
    assert status == 200 and b'"ok": true' in body


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"GET /healthz HTTP/1.1 extra\r\nhost: cp\r\n\r\n", 400, "malformed"),
        (b"G@T /healthz HTTP/1.1\r\nhost: cp\r\n\r\n", 400, "malformed"),
        (b"\x16\x03\x01garbage\r\n\r\n", 400, "malformed"),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "Host"),
        (b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400, "Host"),
        (b"GET /healthz HTTP/1.1\r\nhost: cp\r\nbad header\r\n\r\n", 400, "malformed"),
        (b"GET /healthz HTTP/1.1\r\nhost: cp\r\n folded\r\n\r\n", 400, "malformed"),
        (b"POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ncontent-length: 5\r\n"
         b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400, "malformed"),
        (b"POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ntransfer-encoding: chunked\r\n\r\n"
         b"zz\r\nhello\r\n0\r\n\r\n", 400, "malformed"),
        (b"GET /healthz HTTP/2.0\r\nhost: cp\r\n\r\n", 505, "version"),
        (b"GET /healthz HTTP/1.1\r\nhost: cp\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", 431,
         "head"),
    ],
    ids=["request-line", "method", "tls-in-tls", "no-host", "two-hosts", "header-line",
         "obs-fold", "cl-and-te", "bad-chunk", "version", "oversized-head"],
)  # fmt: skip
def test_a_malformed_request_gets_a_clear_4xx_and_the_connection_closes(
    server: Server, data: bytes, status: int, words: str
) -> None:
    with _connect(server) as sock:
        sock.sendall(data)
        [(got, headers, body)] = _responses(sock, 1)
        assert got == status and words.lower() in body.decode().lower(), body
        assert headers["connection"] == "close"
        assert _responses(sock, 1) == []  # closed after the error
    _still_serving(server)


def test_a_request_written_one_byte_at_a_time_is_served(server: Server) -> None:
    data = b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n"
    with _connect(server) as sock:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])  # one TLS record per byte
        [(status, _, body)] = _responses(sock, 1)
    assert status == 200 and b'"ok": true' in body


def test_pipelined_requests_in_one_segment_are_answered_in_order(server: Server) -> None:
    auth = f"authorization: Bearer {server.token}\r\n".encode()
    data = (
        b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n"
        + b"GET /api/v1/nowhere HTTP/1.1\r\nhost: cp\r\n" + auth + b"\r\n"
        + b"POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ncontent-length: 2\r\n\r\n{}"
        + b"GET /healthz HTTP/1.1\r\nhost: cp\r\nconnection: close\r\n\r\n"
        + b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n"  # after a closing request: not served
    )  # fmt: skip
    with _connect(server) as sock:
        sock.sendall(data)
        got = _responses(sock, 5)
    assert [status for status, _, _ in got] == [200, 404, 400, 200]
    assert b"csr" in got[2][2] and got[3][1]["connection"] == "close"


def test_a_body_longer_than_its_content_length_is_read_as_the_next_request(
    server: Server,
) -> None:
    """The extra bytes are not a request: the first is answered, the rest gets a 400."""
    data = b'POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ncontent-length: 2\r\n\r\n{}{"x": 1}'
    got = _exchange(server, data, 2)
    assert [status for status, _, _ in got] == [400, 400]
    assert b"csr" in got[0][2] and b"malformed" in got[1][2]
    _still_serving(server)


def test_a_body_shorter_than_its_content_length_times_out_with_408(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "_IDLE_TIMEOUT", 0.5)
    data = b"POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ncontent-length: 100\r\n\r\n{}"
    t0 = time.monotonic()
    [(status, headers, body)] = _exchange(server, data)
    assert status == 408 and b"not completed in time" in body and headers["connection"] == "close"
    assert time.monotonic() - t0 < 5
    _still_serving(server)


def test_a_client_closing_mid_body_does_not_hurt_the_server(server: Server) -> None:
    data = b"POST /api/v1/certificates HTTP/1.1\r\nhost: cp\r\ncontent-length: 100\r\n\r\n{}"
    for _ in range(3):
        with _connect(server) as sock:
            sock.sendall(data)
    _still_serving(server)
