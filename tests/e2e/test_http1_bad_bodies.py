"""Malformed HTTP/1.1 request bodies, raw bytes through a real sidecar to a raw upstream.

A framing error found while the body streams (after the head went upstream) must
answer 400 and close, and abort the upstream request (its connection closed), not
leave the client and the upstream waiting for the rest.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.core.codec.http1.test_codecs import MALFORMED_CHUNKED
from tests.support import Proc, free_port, simple_config, start_sidecar, write_config

pytestmark = pytest.mark.e2e

HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@dataclass
class RawUpstream:
    """Accepts connections and records what each one received until it closed."""

    sock: socket.socket
    port: int
    received: list[bytes] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer: bytes = b""
    """Sent as soon as a request head arrived (before its body ends), if set."""

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with self.lock:
            i = len(self.received)
            self.received.append(b"")
            self.closed.append(False)
        conn.settimeout(30)
        with conn:
            try:
                while chunk := conn.recv(65536):
                    with self.lock:
                        self.received[i] += chunk
                        answer = self.answer if b"\r\n\r\n" in self.received[i] else b""
                        self.answer = self.answer if not answer else b""
                    if answer:
                        conn.sendall(answer)
            except OSError:
                pass
        with self.lock:
            self.closed[i] = True

    def wait_request(self, timeout: float = 5.0) -> int:
        """The index of the first connection that received a request head."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for i, data in enumerate(self.received):
                    if b"\r\n\r\n" in data:
                        return i
            time.sleep(0.02)
        raise AssertionError("the upstream received no request")

    def wait_closed(self, i: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.closed[i]:
                    return True
            time.sleep(0.02)
        return False


@pytest.fixture
def raw_upstream() -> Iterator[RawUpstream]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(16)
    up = RawUpstream(sock, sock.getsockname()[1])
    t = threading.Thread(target=up.serve, daemon=True)
    t.start()
    yield up
    sock.close()


def _exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``; what came back, and whether the sidecar closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            return out, False
        return out, True


MALFORMED = MALFORMED_CHUNKED  # the codec tests' cases, here through a real sidecar


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_chunked_body_answers_400_closes_and_aborts_upstream(
    tmp_path: Path, procs: list[Proc], raw_upstream: RawUpstream, body: bytes
) -> None:
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(
        write_config(tmp_path, simple_config(raw_upstream.port, port, admin)), admin
    )
    procs.append(sidecar)
    out, closed = _exchange(port, HEAD + body)
    assert out.startswith(b"HTTP/1.1 400 "), out[:300]
    assert b"x-plait-reason: bad request" in out.lower()
    assert closed, "the sidecar kept the connection open after a malformed body"
    # The head went upstream before the body failed: that request is aborted.
    i = raw_upstream.wait_request()
    assert raw_upstream.wait_closed(i), "the upstream still holds the incomplete request"
    assert not raw_upstream.received[i].endswith(b"0\r\n\r\n")
    assert "Traceback" not in sidecar.logs()


def test_body_error_after_the_head_went_upstream_aborts_it(
    tmp_path: Path, procs: list[Proc], raw_upstream: RawUpstream
) -> None:
    """The head and a good chunk go upstream first; the bad chunk size comes later."""
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(
        write_config(tmp_path, simple_config(raw_upstream.port, port, admin)), admin
    )
    procs.append(sidecar)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(HEAD + b"5\r\nhello\r\n")
        i = raw_upstream.wait_request()
        s.sendall(b"zz\r\nworld\r\n0\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400 "), out[:300]
    assert raw_upstream.wait_closed(i), "the upstream still holds the incomplete request"
    assert raw_upstream.received[i].startswith(b"POST /x HTTP/1.1\r\n")
    assert not raw_upstream.received[i].endswith(b"0\r\n\r\n")


def test_body_error_after_the_response_started_closes_both_connections(
    tmp_path: Path, procs: list[Proc], raw_upstream: RawUpstream
) -> None:
    """The upstream answers before the body ended; then the body breaks: the client's
    connection closes without the response's end, the upstream's too."""
    raw_upstream.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(
        write_config(tmp_path, simple_config(raw_upstream.port, port, admin)), admin
    )
    procs.append(sidecar)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(HEAD + b"5\r\nhello\r\n")
        out = b""
        while b"abc" not in out:
            out += s.recv(65536)
        i = raw_upstream.wait_request()
        s.sendall(b"zz\r\nworld\r\n0\r\n\r\n")
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    assert not out.endswith(b"0\r\n\r\n"), out  # the response never ended
    assert raw_upstream.wait_closed(i), "the upstream still holds the incomplete request"
    assert "Traceback" not in sidecar.logs()


def test_body_that_stalls_is_answered_408_after_the_idle_timeout(
    tmp_path: Path, procs: list[Proc], raw_upstream: RawUpstream
) -> None:
    """A client that sends part of a body and then nothing (slowloris) holds the request
    and an upstream connection only for the listener's idle timeout: then 408, both
    connections closed."""
    port, admin = free_port(), free_port()
    extra = "    timeouts: {idle: 1s}\n"
    config = simple_config(raw_upstream.port, port, admin, extra=extra)
    procs.append(sidecar := start_sidecar(write_config(tmp_path, config), admin))
    t0 = time.monotonic()
    out, closed = _exchange(
        port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", timeout=10
    )
    assert out.startswith(b"HTTP/1.1 408 "), out[:300]
    assert 0.9 < time.monotonic() - t0 < 5
    assert closed, "the sidecar kept the connection open after a stalled body"
    i = raw_upstream.wait_request()
    assert raw_upstream.wait_closed(i), "the upstream still holds the incomplete request"
    assert "Traceback" not in sidecar.logs()
