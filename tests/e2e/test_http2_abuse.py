"""HTTP/2 from hostile or merely different clients, through a real sidecar: raw frames on a
socket (framed with ``h2`` as a client), ``nghttp``, and a second well-behaved client whose
latency must not suffer while another connection misbehaves."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from plait.core.codec.http2.limits import RESET_LIMIT
from tests.e2e._resilience import metric
from tests.support import (
    Proc,
    control,
    free_port,
    http_get,
    simple_config,
    start_echo,
    start_flaky,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e

ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, COMPRESSION_ERROR = 0xB, 0x3, 0x9
_GOAWAY = 0x7


@pytest.fixture
def echo_mesh(tmp_path: Path, procs: list[Proc]) -> tuple[Proc, int]:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    return sidecar, port


@pytest.fixture
def flaky_mesh(tmp_path: Path, procs: list[Proc]) -> tuple[Proc, int, int]:
    """A sidecar in front of an upstream that counts what reaches it."""
    up = start_flaky(tmp_path, delay_ms=20)
    procs.append(up)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(up.port, port, admin)), admin)
    procs.append(sidecar)
    return sidecar, port, up.port


def _client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def _request(conn: h2.connection.H2Connection, sid: int, body: bytes = b"", port: int = 0) -> None:
    headers = [
        (":method", "POST" if body else "GET"),
        (":path", "/abuse"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
    ]
    if body:
        headers.append(("content-length", str(len(body))))
    conn.send_headers(sid, headers, end_stream=not body)
    if body:
        conn.send_data(sid, body, end_stream=True)


def _exchange(
    sock: socket.socket, conn: h2.connection.H2Connection, sid: int, timeout: float = 5.0
) -> tuple[int, bytes]:
    """Read until stream ``sid`` ends; answers the server's frames as a client does."""
    sock.settimeout(timeout)
    status, body = 0, b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before stream {sid} ended (status {status})")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                return status, body
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise ConnectionError(f"stream {sid} reset: {ev.error_code}")
        if out := conn.data_to_send():
            sock.sendall(out)


def _goaway_code(sock: socket.socket, timeout: float = 5.0) -> int | None:
    """Read raw frames until a GOAWAY (its error code) or EOF (None)."""
    sock.settimeout(timeout)
    buf = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                ftype, payload = buf[3], buf[9 : 9 + length]
                buf = buf[9 + length :]
                if ftype == _GOAWAY:
                    return int(struct.unpack(">I", payload[4:8])[0])
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
    return None


def _http2_errors(sidecar: Proc, reason: str) -> float:
    """``plait_http2_connection_errors_total`` for ``reason``, once the close is counted."""
    deadline = time.monotonic() + 2
    while (
        n := metric(sidecar.admin_port, "plait_http2_connection_errors_total", reason=reason)
    ) < 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return n


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert m is not None
    return int(m.group(1))


class _Prober:
    """A well-behaved HTTP/1.1 client on its own connections, timing each request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status, _, _ = http_get(self.port, "/probe", timeout=30)
                if status != 200:
                    self.failures.append(str(status))
            except OSError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - t0)
            time.sleep(0.01)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Prober]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(35)


# -- a whole request in the first segment ---------------------------------------------------


def test_request_in_the_first_segment_is_answered(echo_mesh: tuple[Proc, int]) -> None:
    """Preface, SETTINGS, HEADERS and DATA with END_STREAM in one write: what plait's own
    upstream client (and grpc-go, nghttp with -d) sends on a fresh connection."""
    _, port = echo_mesh
    conn = _client()
    _request(conn, 1, body=b"hello", port=port)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        status, body = _exchange(sock, conn, 1)
    assert status == 200
    assert json.loads(body)["body"] == "hello"


def test_request_written_one_byte_at_a_time(echo_mesh: tuple[Proc, int]) -> None:
    _, port = echo_mesh
    conn = _client()
    _request(conn, 1, body=b"slowly", port=port)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in conn.data_to_send():
            sock.send(bytes([b]))
        status, body = _exchange(sock, conn, 1)
    assert status == 200
    assert json.loads(body)["body"] == "slowly"


def test_large_body_starting_in_the_first_segment(echo_mesh: tuple[Proc, int]) -> None:
    """70 KB: the first write carries the head and the first 64 KiB (the default window);
    the rest follows once the server's SETTINGS and WINDOW_UPDATE arrive."""
    _, port = echo_mesh
    conn = _client()
    body = bytes(range(256)) * 280
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/big"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            ("content-length", str(len(body))),
        ],
    )
    first = conn.local_flow_control_window(1)
    for i in range(0, first, conn.max_outbound_frame_size):
        conn.send_data(1, body[i : min(first, i + conn.max_outbound_frame_size)])
    rest = body[first:]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        sock.settimeout(5)
        while rest:
            for _ in conn.receive_data(sock.recv(65536)):
                pass
            n = min(len(rest), conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            if n:
                conn.send_data(1, rest[:n], end_stream=n == len(rest))
                rest = rest[n:]
            sock.sendall(conn.data_to_send())
        status, answer = _exchange(sock, conn, 1)
    assert status == 200
    assert json.loads(answer)["body"].encode("latin-1") == body


def test_nghttp_post_with_body(echo_mesh: tuple[Proc, int], tmp_path: Path) -> None:
    _, port = echo_mesh
    (tmp_path / "b").write_bytes(b"hello")
    out = subprocess.run(
        ["nghttp", "-v", "-d", str(tmp_path / "b"), f"http://127.0.0.1:{port}/n"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert ":status: 200" in out.stdout


def _raw_upstream_mesh(tmp_path: Path, procs: list[Proc]) -> tuple[socket.socket, Path, int, Proc]:
    """A sidecar with an access log in front of a listening socket the test answers by hand:
    (that socket, the access log, the sidecar's port, the sidecar)."""
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(4)
    upstream.settimeout(10)
    log = tmp_path / "access.log"
    port, admin = free_port(), free_port()
    text = simple_config(upstream.getsockname()[1], port, admin) + f"  accessLog: {{path: {log}}}\n"
    sidecar = start_sidecar(write_config(tmp_path, text), admin)
    procs.append(sidecar)
    return upstream, log, port, sidecar


def test_client_reset_aborts_the_upstream_request(tmp_path: Path, procs: list[Proc]) -> None:
    """RST_STREAM from the client while the upstream has not answered: the upstream request
    is aborted (its connection closed) and the stream gets its access-log line."""
    upstream, log, port, _ = _raw_upstream_mesh(tmp_path, procs)
    conn = _client()
    _request(conn, 1, port=port)
    with upstream, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        accepted, _ = upstream.accept()
        with accepted:
            accepted.settimeout(5)
            assert accepted.recv(65536).startswith(b"GET /abuse HTTP/1.1")
            conn.reset_stream(1)
            sock.sendall(conn.data_to_send())
            assert accepted.recv(65536) == b""  # the sidecar closed the upstream request
    deadline = time.monotonic() + 5
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["path"] == "/abuse" and entry["status"] == 0
    assert entry["failure_reason"] == "client closed"


@pytest.mark.parametrize("leave", ["reset", "close"])
def test_client_leaving_while_a_warm_upstream_answers_aborts_it(
    tmp_path: Path, procs: list[Proc], leave: str
) -> None:
    """The second request finds a pooled upstream connection and waits for its answer in
    callbacks (no task): a reset of the stream, or the client's connection closing, still
    aborts the upstream request, and the stream gets its access-log line once."""
    upstream, log, port, sidecar = _raw_upstream_mesh(tmp_path, procs)
    conn = _client()
    _request(conn, 1, port=port)
    with upstream, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        accepted, _ = upstream.accept()
        with accepted:
            accepted.settimeout(5)
            assert accepted.recv(65536).startswith(b"GET /abuse HTTP/1.1")
            accepted.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            assert _exchange(sock, conn, 1) == (200, b"ok")
            _request(conn, 3, port=port)
            sock.sendall(conn.data_to_send())
            assert accepted.recv(65536).startswith(b"GET /abuse HTTP/1.1")  # same connection
            if leave == "reset":
                conn.reset_stream(3)
                sock.sendall(conn.data_to_send())
            else:
                sock.shutdown(socket.SHUT_RDWR)
            assert accepted.recv(65536) == b""  # the sidecar closed the upstream request
    deadline = time.monotonic() + 5
    while len(log.read_text().splitlines() if log.exists() else []) < 2:
        assert time.monotonic() < deadline, "no access-log line for the abandoned stream"
        time.sleep(0.05)
    time.sleep(0.3)  # a second line for the same stream would show up by now
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["status"] for e in entries] == [200, 0]
    assert entries[1]["failure_reason"] == "client closed"
    assert "Traceback" not in sidecar.logs()


# -- counting ---------------------------------------------------------------------------------


def _connections_total(admin: int) -> float:
    _, _, text = http_get(admin, "/metrics")
    for line in text.decode().splitlines():
        if line.startswith('plait_connections_total{listener="out"}'):
            return float(line.split()[-1])
    return 0.0  # no connection accepted yet


def test_h2c_connections_are_counted_once(echo_mesh: tuple[Proc, int]) -> None:
    sidecar, port = echo_mesh
    before = _connections_total(sidecar.admin_port)
    for _ in range(3):
        conn = _client()
        _request(conn, 1, port=port)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(conn.data_to_send())
            assert _exchange(sock, conn, 1)[0] == 200
    assert _connections_total(sidecar.admin_port) - before == 3


# -- rapid reset (CVE-2023-44487) -----------------------------------------------------------


def _reset_pairs(conn: h2.connection.H2Connection, first_sid: int, n: int, port: int) -> bytes:
    for i in range(n):
        sid = first_sid + 2 * i
        _request(conn, sid, port=port)
        conn.reset_stream(sid)
    return conn.data_to_send()


def test_rapid_reset_in_one_write_is_cut_off(flaky_mesh: tuple[Proc, int, int]) -> None:
    sidecar, port, up = flaky_mesh
    rss_before = _rss_kib(sidecar.popen.pid)
    with _Prober(port).running() as prober:
        time.sleep(0.2)
        conn = _client()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(conn.data_to_send() + _reset_pairs(conn, 1, 20_000, port))
            code = _goaway_code(sock, timeout=10)
        time.sleep(0.5)
    assert code == ENHANCE_YOUR_CALM
    assert _http2_errors(sidecar, "rapid_reset") == 1
    # Streams reset in the same read never reach the upstream.
    assert control(up)["requests"] == prober_count(prober)
    assert not prober.failures
    assert max(prober.latencies) < 1.0, max(prober.latencies)
    assert _rss_kib(sidecar.popen.pid) - rss_before < 10 * 1024


def prober_count(prober: _Prober) -> int:
    return len(prober.latencies) - len(prober.failures)


def test_rapid_reset_spread_over_writes_is_cut_off(flaky_mesh: tuple[Proc, int, int]) -> None:
    """Each pair in its own write, so every stream starts before its reset arrives."""
    sidecar, port, up = flaky_mesh
    rss_before = _rss_kib(sidecar.popen.pid)
    conn = _client()
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        try:
            for i in range(5000):
                sock.sendall(_reset_pairs(conn, 1 + 2 * i, 1, port))
                sent += 1
                if i % 20 == 0:
                    time.sleep(0.005)
        except OSError:
            pass  # the sidecar closed the connection
        code = _goaway_code(sock, timeout=10)
    assert code == ENHANCE_YOUR_CALM
    assert _http2_errors(sidecar, "rapid_reset") == 1
    assert control(up)["requests"] <= 300  # the cap, not the 5,000 the client sent
    assert _rss_kib(sidecar.popen.pid) - rss_before < 10 * 1024


def test_cancelling_a_minority_of_calls_keeps_the_connection(echo_mesh: tuple[Proc, int]) -> None:
    """A client that cancels some of its calls (as gRPC clients do), more often than the
    reset budget's count alone allows but a quarter of what it opens, keeps its connection."""
    _, port = echo_mesh
    conn = _client()
    sid = 1
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        for _ in range(RESET_LIMIT + 50):
            for _ in range(3):
                _request(conn, sid, port=port)
                sock.sendall(conn.data_to_send())
                assert _exchange(sock, conn, sid)[0] == 200
                sid += 2
            sock.sendall(_reset_pairs(conn, sid, 1, port))
            sid += 2
        _request(conn, sid, port=port)
        sock.sendall(conn.data_to_send())
        assert _exchange(sock, conn, sid)[0] == 200


# -- control-frame floods from a client that never reads ---------------------------------------


def _flood(port: int, frame: bytes, count: int) -> tuple[int, int | None]:
    """Send ``count`` copies of ``frame`` without reading; returns (frames sent, GOAWAY code)."""
    conn = _client()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    sent = 0
    batch = frame * 1000
    with sock:
        sock.sendall(conn.data_to_send())
        try:
            while sent < count:
                sock.sendall(batch)
                sent += 1000
        except OSError:
            pass  # closed by the sidecar: what we want
        code = _goaway_code(sock, timeout=10) if sent < count else None
    return sent, code


PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
SETTINGS = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64"


@pytest.mark.parametrize("frame", [PING, SETTINGS], ids=["ping", "settings"])
def test_control_frame_flood_from_a_non_reader_is_closed(
    flaky_mesh: tuple[Proc, int, int], frame: bytes
) -> None:
    sidecar, port, _ = flaky_mesh
    rss_before = _rss_kib(sidecar.popen.pid)
    with _Prober(port).running() as prober:
        time.sleep(0.2)
        sent, _ = _flood(port, frame, 1_000_000)
        time.sleep(0.3)
    assert sent < 1_000_000, "the sidecar kept answering a client that never reads"
    assert _http2_errors(sidecar, "control_flood") == 1
    assert not prober.failures
    assert max(prober.latencies) < 1.0, max(prober.latencies)
    assert _rss_kib(sidecar.popen.pid) - rss_before < 10 * 1024


# -- connection errors are announced -------------------------------------------------------------


def test_flow_control_violation_gets_goaway(echo_mesh: tuple[Proc, int]) -> None:
    _, port = echo_mesh
    conn = _client()
    overflow = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + struct.pack(">I", 2**31 - 1)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send() + overflow + overflow)
        assert _goaway_code(sock) == FLOW_CONTROL_ERROR
    assert _http2_errors(echo_mesh[0], "flow_control_error") == 1


@pytest.mark.parametrize(
    "block",
    [bytes.fromhex("80"), bytes.fromhex("820081000161"), bytes.fromhex("8220")],
    ids=["index-0", "huffman-padding", "late-size-update"],
)
def test_undecodable_header_block_gets_compression_error(
    echo_mesh: tuple[Proc, int], block: bytes
) -> None:
    """RFC 9113 §4.3: the HPACK state is lost, so the connection ends with COMPRESSION_ERROR;
    a new connection is served as before."""
    sidecar, port = echo_mesh
    conn = _client()
    headers = struct.pack(">I", len(block))[1:] + bytes([0x1, 0x5]) + struct.pack(">I", 1)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send() + headers + block)
        assert _goaway_code(sock) == COMPRESSION_ERROR
    assert _http2_errors(sidecar, "compression_error") == 1
    conn = _client()
    _request(conn, 1, port=port)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        assert _exchange(sock, conn, 1)[0] == 200


def test_unterminated_header_block_is_bounded(echo_mesh: tuple[Proc, int]) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block: the
    connection closes well before 1 MiB (the block may not exceed 4x the advertised limit)."""
    _, port = echo_mesh
    conn = _client()
    block = b"\x00" * 16384  # HPACK: 0x00 starts a literal; never decoded anyway
    headers = b"\x00\x40\x00\x01\x00\x00\x00\x00\x01" + block  # HEADERS, no END_HEADERS, sid 1
    cont = b"\x00\x40\x00\x09\x00\x00\x00\x00\x01" + block  # CONTINUATION, no END_HEADERS
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send() + headers + cont * 17)  # 288 KiB
        assert _goaway_code(sock) == ENHANCE_YOUR_CALM
    assert _http2_errors(echo_mesh[0], "header_block") == 1


# -- streams held open without a body -----------------------------------------------------------


def test_streams_left_without_their_body_end_with_408(tmp_path: Path, procs: list[Proc]) -> None:
    """A client opens streams and never sends their bodies: each is answered 408 after the
    listener's idle timeout (the upstream requests are released), the connection goes on
    serving, and a second client is served meanwhile."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    config = simple_config(echo.port, port, admin, extra="    timeouts: {idle: 1s}\n")
    procs.append(sidecar := start_sidecar(write_config(tmp_path, config), admin))
    conn = _client()
    headers = [(":method", "POST"), (":path", "/held"), (":scheme", "http"), (":authority", "a")]
    for sid in range(1, 101, 2):
        conn.send_headers(sid, headers, end_stream=False)
    statuses: dict[int, int] = {}
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(conn.data_to_send())
        assert http_get(port, "/meanwhile")[0] == 200
        sock.settimeout(10)
        while len(statuses) < 50:
            data = sock.recv(65536)
            assert data, f"closed after {len(statuses)} answers"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    statuses[ev.stream_id] = int(dict(ev.headers)[b":status"])
            if out := conn.data_to_send():
                sock.sendall(out)
        assert 0.9 < time.monotonic() - t0 < 6
        _request(conn, 101, port=port)
        sock.sendall(conn.data_to_send())
        assert _exchange(sock, conn, 101)[0] == 200
    assert set(statuses.values()) == {408}
    assert "Traceback" not in sidecar.logs()
