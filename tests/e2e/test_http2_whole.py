"""Small HTTP/2 exchanges with bodies, through a sidecar to an HTTP/2 upstream.

A request whose small body ends in the read that brought its HEADERS, answered by a
warm upstream connection with a whole response (gRPC's shape: HEADERS, DATA,
trailers), is proxied from the connections' callbacks, without a stream task
(``core/exchange/driver.py``, ``core/exchange/gather.py``). These tests check what a
client and an upstream see of that path: bodies, trailers and flow-control windows
intact over many exchanges on one connection each way; a client reset, a deadline
and the client's connection closing reach the upstream as RST_STREAM; a response
without a length is forwarded as it comes, not held for its end.

The upstream is an HTTP/2 server run by the test on a socket (``h2`` on the server
side), so each test decides frame by frame what the sidecar receives.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e._resilience import mesh_config
from tests.support import Proc, free_port, start_sidecar, write_config

pytestmark = pytest.mark.e2e

Answer = Callable[["_Upstream", int, dict[str, str], bytes], None]


class _Upstream:
    """An HTTP/2 server on one accepted connection at a time, in a thread: each whole
    request is handed to ``answer``, which writes frames (now, or later from the test)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests: list[int] = []
        self.resets: list[int] = []
        self.errors: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def send(self, fn: Callable[[h2.connection.H2Connection], None]) -> None:
        """Frame something on the connection and write it (from any thread)."""
        with self.lock:
            fn(self.conn)
            assert self.sock is not None
            self.sock.sendall(self.conn.data_to_send())

    def _run(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with self.lock:
                self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                self.conn.initiate_connection()
                self.sock = sock
                sock.sendall(self.conn.data_to_send())
            try:
                self._serve(sock)
            except Exception as exc:  # a test failure, reported by the test
                self.errors.append(repr(exc))
            finally:
                sock.close()

    def _serve(self, sock: socket.socket) -> None:
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        sock.settimeout(0.2)
        while not self._stop:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            with self.lock:
                events = self.conn.receive_data(data)
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    heads[ev.stream_id] = {k.decode(): v.decode() for k, v in ev.headers}
                    bodies[ev.stream_id] = b""
                elif isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    with self.lock:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets.append(ev.stream_id)
                if isinstance(ev, h2.events.StreamEnded):
                    self.requests.append(ev.stream_id)
                    self.answer(self, ev.stream_id, heads[ev.stream_id], bodies.pop(ev.stream_id))
            with self.lock:
                if out := self.conn.data_to_send():
                    sock.sendall(out)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Upstream]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop = True
            self._thread.join(5)
            self.listener.close()


def _send_data(
    conn: h2.connection.H2Connection, sid: int, data: bytes, end_stream: bool = False
) -> None:
    """DATA frames of at most the peer's frame size."""
    size = conn.max_outbound_frame_size
    for i in range(0, len(data), size):
        conn.send_data(sid, data[i : i + size], end_stream=end_stream and i + size >= len(data))
    if not data:
        conn.send_data(sid, b"", end_stream=end_stream)


def _echo(up: _Upstream, sid: int, head: dict[str, str], body: bytes) -> None:
    """gRPC's shape in one write: HEADERS, DATA, trailers."""

    def frames(conn: h2.connection.H2Connection) -> None:
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        _send_data(conn, sid, body)
        conn.send_headers(sid, [("grpc-status", "0"), ("x-len", str(len(body)))], end_stream=True)

    up.send(frames)


def _hold(up: _Upstream, sid: int, head: dict[str, str], body: bytes) -> None:
    """The first request is answered; later ones wait for the test."""
    if len(up.requests) == 1:
        _echo(up, sid, head, body)


def _sidecar(tmp_path: Path, procs: list[Proc], up: _Upstream, rule: str = "") -> tuple[int, Path]:
    """A sidecar with an access log, its gRPC listener and route to ``up``."""
    log = tmp_path / "access.log"
    port, admin = free_port(), free_port()
    text = mesh_config([up.port], port, admin, rule=rule, protocol="grpc", access_log=str(log))
    procs.append(start_sidecar(write_config(tmp_path, text), admin))
    return port, log


class _Client:
    """An HTTP/2 client on one socket (``h2``), a stream at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(self.conn.data_to_send())

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def post(self, body: bytes, *extra: tuple[str, str], write: bool = True) -> int:
        """Frame HEADERS and DATA with END_STREAM and send them in one write (``write``:
        else they wait for the next one); the stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{self.port}"),
             (":path", "/test.Echo/Unary"), ("content-type", "application/grpc"),
             ("te", "trailers"), *extra],
        )  # fmt: skip
        _send_data(self.conn, sid, body, end_stream=True)
        if write:
            self.sock.sendall(self.conn.data_to_send())
        return sid

    def read_many(self, sids: set[int], timeout: float = 10) -> dict[int, bytes | int]:
        """Each stream's response body once it ended, or its reset's error code."""
        out: dict[int, bytes | int] = {}
        bodies: dict[int, bytes] = dict.fromkeys(sids, b"")
        self.sock.settimeout(timeout)
        while set(out) != sids:
            data = self.sock.recv(65536)
            assert data, f"the sidecar closed the connection; ended: {sorted(out)}"
            for ev in self.conn.receive_data(data):
                sid = getattr(ev, "stream_id", None)
                if sid not in sids:
                    continue
                if isinstance(ev, h2.events.DataReceived):
                    bodies[sid] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded):
                    out[sid] = bodies[sid]
                elif isinstance(ev, h2.events.StreamReset):
                    out[sid] = ev.error_code
            if pending := self.conn.data_to_send():
                self.sock.sendall(pending)
        return out

    def read(
        self, sid: int, until: type = h2.events.StreamEnded, timeout: float = 10
    ) -> tuple[dict[str, str], bytes, dict[str, str]]:
        """Events of ``sid`` until ``until`` (the headers, body and trailers so far)."""
        head: dict[str, str] = {}
        body = b""
        trailers: dict[str, str] = {}
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(65536)
            assert data, "the sidecar closed the connection"
            done = False
            for ev in self.conn.receive_data(data):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    head = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream {sid} reset ({ev.error_code})")
                done = done or isinstance(ev, until)
            if out := self.conn.data_to_send():
                self.sock.sendall(out)
            if done:
                return head, body, trailers


def _wait(cond: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _second(client: _Client, up: _Upstream, body: bytes) -> int:
    """A first exchange warms the upstream pool; the second one's stream id, once its
    request reached the upstream (which holds it: ``_hold``)."""
    assert client.read(client.post(b"warm"))[1] == b"warm"
    sid = client.post(body)
    _wait(lambda: len(up.requests) == 2, "the second request reached the upstream")
    return sid


def _log_lines(log: Path, n: int) -> list[dict[str, object]]:
    _wait(lambda: log.exists() and len(log.read_text().splitlines()) >= n, "access-log lines")
    time.sleep(0.3)  # one more line for the same stream would show up by now
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_many_exchanges_keep_bodies_trailers_and_windows(tmp_path: Path, procs: list[Proc]) -> None:
    """200 exchanges of 30 KB each way, one after another on one client connection: 6 MB,
    far past both connections' initial 64 KB windows, so every byte the sidecar took
    whole must have been acknowledged to the client and to the upstream."""
    with contextlib.ExitStack() as stack, _Upstream(_echo).running() as up:
        port, _ = _sidecar(tmp_path, procs, up)
        client = stack.enter_context(_Client(port))
        for i in range(200):
            body = bytes([i % 251]) * 30_000
            sid = client.post(body)
            head, got, trailers = client.read(sid)
            assert head[":status"] == "200"
            assert got == body, f"exchange {i}"
            assert trailers == {"grpc-status": "0", "x-len": "30000"}
        assert up.accepted == 1  # one multiplexed upstream connection served them all
        assert up.errors == []


@pytest.mark.parametrize("leave", ["reset", "close"])
def test_client_leaving_while_the_upstream_holds_the_answer_resets_it(
    tmp_path: Path, procs: list[Proc], leave: str
) -> None:
    """The second exchange waits on a warm upstream connection: the client's RST_STREAM,
    or its connection closing, resets the upstream stream, and the exchange gets one
    access-log line."""
    with contextlib.ExitStack() as stack, _Upstream(_hold).running() as up:
        port, log = _sidecar(tmp_path, procs, up)
        client = stack.enter_context(_Client(port))
        sid = _second(client, up, b"held")
        if leave == "reset":
            client.conn.reset_stream(sid)
            client.sock.sendall(client.conn.data_to_send())
        else:
            client.sock.close()
        _wait(lambda: up.requests[1] in up.resets, "RST_STREAM for the upstream stream")
        entries = _log_lines(log, 2)
        assert [e["status"] for e in entries] == [200, 0]
        assert entries[1]["failure_reason"] == "client closed"


@pytest.mark.parametrize("timeout", ["request", "backendRequest"])
def test_timeout_while_the_upstream_holds_the_answer(
    tmp_path: Path, procs: list[Proc], timeout: str
) -> None:
    """A request timeout (or a per-try one) passes while the exchange waits on a warm
    upstream connection: the gRPC client gets DEADLINE_EXCEEDED (a timeout) in time,
    and the upstream stream is reset."""
    with contextlib.ExitStack() as stack, _Upstream(_hold).running() as up:
        port, log = _sidecar(tmp_path, procs, up, f"timeouts: {{{timeout}: 300ms}}")
        client = stack.enter_context(_Client(port))
        assert client.read(client.post(b"warm"))[1] == b"warm"
        t0 = time.monotonic()
        head, _, trailers = client.read(client.post(b"late"))
        waited = time.monotonic() - t0
        assert head.get("grpc-status") == "4" or trailers.get("grpc-status") == "4", head
        assert 0.25 <= waited < 3, waited
        _wait(lambda: up.requests[1] in up.resets, "RST_STREAM for the upstream stream")
        entries = _log_lines(log, 2)
        assert entries[1]["failure_reason"] in ("request timeout", "upstream timeout")


def test_response_without_a_length_is_forwarded_as_it_comes(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The upstream sends its response HEADERS, then the rest a second later: the client
    gets the HEADERS at once (a stream of events must not wait for its end)."""
    with contextlib.ExitStack() as stack, _Upstream(_hold).running() as up:
        port, _ = _sidecar(tmp_path, procs, up)
        client = stack.enter_context(_Client(port))
        sid = _second(client, up, b"slow")
        usid = up.requests[1]
        up.send(lambda c: c.send_headers(usid, [(":status", "200"), ("x-first", "1")]))
        head, body, _ = client.read(sid, until=h2.events.ResponseReceived, timeout=0.8)
        assert head["x-first"] == "1" and body == b""
        time.sleep(0.5)
        up.send(lambda c: c.send_data(usid, b"rest", end_stream=True))
        assert client.read(sid)[1] == b"rest"


# -- what a hostile or merely different client sends ------------------------------------


def test_many_requests_with_bodies_and_resets_in_one_segment(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """60 requests with bodies in one write, every other one reset in that same write:
    the others are answered, each with its own body; a request reset in the read that
    brought it never reaches the upstream."""
    with contextlib.ExitStack() as stack, _Upstream(_echo).running() as up:
        port, _ = _sidecar(tmp_path, procs, up)
        client = stack.enter_context(_Client(port))
        assert client.read(client.post(b"warm"))[1] == b"warm"
        kept, dropped = set(), set()
        for i in range(60):
            sid = client.post(b"%d" % i * 50, write=False)
            if i % 2:
                client.conn.reset_stream(sid)
                dropped.add(sid)
            else:
                kept.add(sid)
        client.sock.sendall(client.conn.data_to_send())
        got = client.read_many(kept)
        assert got == {sid: b"%d" % ((sid - 3) // 2) * 50 for sid in kept}
        assert client.read(client.post(b"after"))[1] == b"after"  # the connection serves on
        assert len(up.requests) == 1 + len(kept) + 1
        assert up.errors == []


def test_request_with_a_body_written_one_byte_at_a_time(tmp_path: Path, procs: list[Proc]) -> None:
    """Preface, HEADERS and a DATA body, one byte per write: the body is not whole in any
    read, so the request streams, and is answered as one that came in one segment."""
    with _Upstream(_echo).running() as up:
        port, _ = _sidecar(tmp_path, procs, up)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [(":method", "POST"), (":scheme", "http"), (":authority", "a"),
             (":path", "/test.Echo/Unary"), ("content-type", "application/grpc")],
        )  # fmt: skip
        conn.send_data(1, b"byte by byte", end_stream=True)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in conn.data_to_send():
                sock.sendall(bytes([b]))
            body = b""
            trailers: dict[bytes, bytes] = {}
            while not trailers:
                data = sock.recv(65536)
                assert data, "closed before the response ended"
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        body += ev.data
                    elif isinstance(ev, h2.events.TrailersReceived):
                        trailers = dict(ev.headers)
        assert body == b"byte by byte" and trailers[b"grpc-status"] == b"0"


def test_body_shorter_than_its_content_length_in_one_segment(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """A body that ends short of its ``content-length``, whole in one read, is a malformed
    request (RFC 9113 §8.1.1): that stream is reset, the upstream never sees it, and the
    connection goes on serving."""
    with contextlib.ExitStack() as stack, _Upstream(_echo).running() as up:
        port, _ = _sidecar(tmp_path, procs, up)
        client = stack.enter_context(_Client(port))
        assert client.read(client.post(b"warm"))[1] == b"warm"
        sid = client.post(b"short", ("content-length", "10"))
        assert client.read_many({sid}) == {sid: 1}  # RST_STREAM PROTOCOL_ERROR
        assert client.read(client.post(b"next"))[1] == b"next"
        assert len(up.requests) == 2
