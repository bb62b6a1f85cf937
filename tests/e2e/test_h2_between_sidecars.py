"""HTTP/1.1 clients through two mTLS sidecars whose hop is HTTP/2 (the default between
sidecars): what an HTTP/1.1 client sends, ordinary, odd or hostile, reaches the app as an
HTTP/1.1 hop would deliver it, or is refused cleanly; the sidecars keep serving.

Real processes on loopback: a control plane, two sidecars with join tokens, and the
standard library's HTTP/1.1 echo server as the app (``_ca_mesh.py``)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support import Proc, http_get, start_echo
from tests.support import send_all_read_all as _send
from tests.support.controlplane import wait_for

from ._ca_mesh import CaMesh, access_lines, ca_mesh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaMesh]:
    tmp = tmp_path_factory.mktemp("h2hop")
    procs: list[Proc] = []
    try:
        app = start_echo(tmp, "server-app")
        procs.append(app)
        m = ca_mesh(tmp, procs, app.port)
        wait_for(lambda: http_get(m.egress, "/warm")[0] == 200, timeout=15)
        yield m
    finally:
        for p in procs:
            p.stop()


def _split(out: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response that ends with the connection."""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0][9:12]), headers, body


def _dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def _echo(port: int, request: bytes) -> dict[str, object]:
    status, _, body = _split(_send(port, request))
    assert status == 200, body[:300]
    return dict(json.loads(body))


def _alive(mesh: CaMesh) -> None:
    status, headers, _ = http_get(mesh.egress, "/still-up")
    assert (status, headers["x-served-by"]) == (200, "server-app")


def test_the_hop_is_http2_and_the_app_gets_http1(mesh: CaMesh) -> None:
    echo = _echo(
        mesh.egress, b"GET /which HTTP/1.1\r\nHost: svc.example\r\nConnection: close\r\n\r\n"
    )
    assert echo["path"] == "/which"
    assert dict(echo["headers"])["host"] == "svc.example"  # type: ignore[call-overload]
    wait_for(lambda: any(e.get("path") == "/which" for e in access_lines(mesh.access_log)))
    line = next(e for e in access_lines(mesh.access_log) if e.get("path") == "/which")
    assert (line["protocol"], line["alpn"]) == ("HTTP/2", "h2")


def test_an_http10_request_without_host(mesh: CaMesh) -> None:
    echo = _echo(mesh.egress, b"GET /ten HTTP/1.0\r\nX-Old: yes\r\n\r\n")
    assert (echo["method"], echo["path"]) == ("GET", "/ten")
    assert dict(echo["headers"])["x-old"] == "yes"  # type: ignore[call-overload]
    _alive(mesh)


def test_an_absolute_form_target(mesh: CaMesh) -> None:
    echo = _echo(
        mesh.egress,
        b"GET http://svc.example/abs?q=1 HTTP/1.1\r\nHost: svc.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert echo["path"] == "/abs?q=1"
    assert dict(echo["headers"])["host"] == "svc.example"  # type: ignore[call-overload]


def test_options_asterisk(mesh: CaMesh) -> None:
    status, _, body = _split(
        _send(mesh.egress, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    )
    assert status in (200, 501), body[:300]  # the app's answer, or the mesh's refusal
    _alive(mesh)


def test_ninety_long_header_fields_arrive_whole(mesh: CaMesh) -> None:
    fields = {f"x-field-{i:03d}": f"{i:03d}-" + "v" * 400 for i in range(90)}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode()
    echo = _echo(
        mesh.egress, b"GET /many HTTP/1.1\r\nHost: x\r\n" + head + b"Connection: close\r\n\r\n"
    )
    got = dict(echo["headers"])  # type: ignore[call-overload]
    assert {k: got.get(k) for k in fields} == fields


def test_many_short_fields_within_the_http1_limit(mesh: CaMesh) -> None:
    """1,400 short fields: a 30 KB head (under the 60 KiB HTTP/1.1 limit) whose HTTP/2
    header list counts 32 bytes more per field (about 70 KB, over the peer sidecar's 60 KiB):
    a clean 431 from the peer, passed on; the sidecars go on."""
    head = b"".join(b"x-%04d: vvvvvvvvvv\r\n" % i for i in range(1400))
    out = _send(
        mesh.egress, b"GET /short HTTP/1.1\r\nHost: x\r\n" + head + b"Connection: close\r\n\r\n"
    )
    assert _split(out)[0] == 431, out[:300]
    _alive(mesh)


def test_expect_100_continue(mesh: CaMesh) -> None:
    with socket.create_connection(("127.0.0.1", mesh.egress), timeout=20) as s:
        s.sendall(
            b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 "), first
        s.sendall(b"hello world")
        out = first.partition(b"\r\n\r\n")[2]
        while chunk := s.recv(65536):
            out += chunk
    status, _, body = _split(out)
    assert status == 200
    assert json.loads(body)["body"] == "hello world"


def test_a_chunked_upload_with_trailers(mesh: CaMesh) -> None:
    chunks = [b"a" * 10, b"b" * 3000, b"c" * 70_000]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nx-sum: 3\r\n\r\n"
    echo = _echo(
        mesh.egress,
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + body,
    )
    assert echo["body"] == b"".join(chunks).decode()


def test_a_large_response(mesh: CaMesh) -> None:
    status, headers, body = _split(
        _send(mesh.egress, b"GET /big/3000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    )
    assert (status, len(body), headers["x-served-by"]) == (200, 3_000_000, "server-app")
    assert body == b"x" * 3_000_000


def test_pipelined_requests_in_one_segment(mesh: CaMesh) -> None:
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    out = _send(mesh.egress, reqs + b"GET /p5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    paths = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        length = int(next(v for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                          if k.lower() == b"content-length"))  # fmt: skip
        paths.append(json.loads(rest[:length])["path"])
        out = rest[length:]
    assert paths == [f"/p{i}" for i in range(6)]


def test_obs_text_in_a_header_value_passes_as_is(mesh: CaMesh) -> None:
    value = bytes(range(0x80, 0x100))
    echo = _echo(
        mesh.egress,
        b"GET /obs HTTP/1.1\r\nHost: x\r\nX-Bin: " + value + b"\r\nConnection: close\r\n\r\n",
    )
    assert dict(echo["headers"])["x-bin"] == value.decode("latin-1")  # type: ignore[call-overload]


def test_clients_that_leave_mid_response_do_not_hurt_the_hop(mesh: CaMesh) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", mesh.egress), timeout=20) as s:
            s.sendall(b"GET /big/5000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1000).startswith(b"HTTP/1.1 200")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _alive(mesh)


def test_more_concurrent_requests_than_one_connection_carries(mesh: CaMesh) -> None:
    """300 requests at once, each held by the app for 0.3 s: more than one HTTP/2
    connection's concurrent streams; every one answered."""
    results: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        status, _, _ = http_get(mesh.egress, f"/delay/0.3?i={i}", timeout=30)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 300
    _alive(mesh)
