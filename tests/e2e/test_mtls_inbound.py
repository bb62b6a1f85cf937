"""Inbound mTLS on a real sidecar: STRICT refuses every kind of bad peer, each counted by
reason; PERMISSIVE serves mTLS and plaintext on one port; identities from files.

The attacking clients are Python's ``ssl`` and ``openssl s_client``; certificates are made
per test with ``cryptography`` (tests/support/pki.py).
"""

from __future__ import annotations

import datetime as dt
import http.client
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import PY, Proc, free_port, http_get, start_echo, start_sidecar, write_config
from tests.support.mtls import (
    CLIENT,
    WEB,
    Pki,
    client_context,
    mesh,
    metric,
    mtls_get,
    peer_auth,
    refusals,
    refused,
    start_web,
)
from tests.support.pki import Authority, self_signed_leaf

pytestmark = pytest.mark.e2e


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, Authority.create("mesh root"))


def wait_count(admin: int, reason: str, want: float) -> float:
    deadline = time.monotonic() + 5
    while (n := refusals(admin, reason)) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_strict_serves_a_valid_peer_and_refuses_each_bad_one_by_reason(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"))
    admin = sidecar.admin_port
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    status, _, body = mtls_get(port, good, "/hello")
    assert status == 200 and b'"path": "/hello"' in body  # the app saw the request

    other_ca = Authority.create("someone else")
    expired = pki.root.leaf(
        CLIENT, not_before=dt.timedelta(hours=-3), not_after=dt.timedelta(hours=-1)
    )
    cases = {
        "no_client_cert": client_context(pki, None, None),
        "unknown_ca": client_context(pki, *pki.files("other", *other_ca.leaf(CLIENT))),
        "expired": client_context(pki, *pki.files("expired", *expired)),
        "wrong_trust_domain": client_context(
            pki, *pki.files("evil", *pki.root.leaf("spiffe://evil.example/ns/default/sa/client"))
        ),
    }
    for reason, ctx in cases.items():
        before = refusals(admin, reason)
        assert refused(port, ctx), reason
        assert wait_count(admin, reason, before + 1) == before + 1, reason

    # A certificate with the right SAN that no CA signed: the chain leads to no known root.
    before = refusals(admin, "unknown_ca")
    assert refused(port, client_context(pki, *pki.files("self", *self_signed_leaf(CLIENT))))
    assert wait_count(admin, "unknown_ca", before + 1) == before + 1

    status, _, _ = http_get_or_zero(port)
    assert status == 0  # plaintext is refused on a STRICT port
    assert wait_count(admin, "plaintext", 1) == 1
    assert metric(admin, "plait_inbound_connections_total", listener="in", transport="mtls") == 1
    # Seven refusals, one info line (a summary at most once a minute; details at debug).
    assert sidecar.logs().count("inbound mTLS refused connections") == 1


def http_get_or_zero(port: int) -> tuple[int, dict[str, str], bytes]:
    try:
        return http_get(port, "/plain", timeout=5)
    except (ConnectionError, http.client.HTTPException):
        return 0, {}, b""


def test_openssl_s_client_with_a_foreign_certificate_is_refused(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"))
    cert, key = pki.files("other", *Authority.create("other").leaf(CLIENT))
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-cert", str(cert),
         "-key", str(key), "-CAfile", str(pki.bundle), "-quiet"],
        input=b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
        capture_output=True,
        timeout=20,
        check=False,
    )  # fmt: skip
    assert b"HTTP/1.1 200" not in r.stdout
    assert wait_count(sidecar.admin_port, "unknown_ca", 1) == 1


def test_permissive_serves_mtls_and_plaintext_on_one_port(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("PERMISSIVE"))
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert mtls_get(port, good, "/tls")[0] == 200
    status, _, body = http_get(port, "/plain")
    assert status == 200 and b'"path": "/plain"' in body
    admin = sidecar.admin_port
    assert metric(admin, "plait_inbound_connections_total", listener="in", transport="mtls") == 1
    assert (
        metric(admin, "plait_inbound_connections_total", listener="in", transport="plaintext") == 1
    )
    # PERMISSIVE still refuses a bad certificate (it only also accepts plaintext).
    other = client_context(pki, *pki.files("other", *Authority.create("x").leaf(CLIENT)))
    assert refused(port, other)
    assert wait_count(admin, "unknown_ca", 1) == 1


def test_no_peer_authentication_with_an_identity_is_permissive(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, _ = start_web(tmp_path, pki, procs, "")
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert mtls_get(port, good)[0] == 200
    assert http_get(port)[0] == 200


def test_disable_serves_plaintext_only(tmp_path: Path, pki: Pki, procs: list[Proc]) -> None:
    port, _ = start_web(tmp_path, pki, procs, peer_auth("DISABLE"))
    assert http_get(port)[0] == 200
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert refused(port, good)


def test_unreadable_identity_file_stops_the_start_naming_the_flag(tmp_path: Path, pki: Pki) -> None:
    cfg = write_config(tmp_path, mesh(9, free_port(), free_port()))
    cert, _ = pki.files("web", *pki.root.leaf(WEB))
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "sidecar", "--config", str(cfg),
         "--identity-cert", str(cert), "--identity-key", str(tmp_path / "missing.key"),
         "--trust-bundle", str(pki.bundle)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert r.returncode != 0
    assert "missing.key" in r.stderr and "--identity-key" in r.stderr


def test_a_strict_tcp_listener_relays_only_for_mtls_peers(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"), protocol="tcp")
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        good.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET /over-tcp HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := tls.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200") and b'"path": "/over-tcp"' in got
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        assert plain.recv(100) == b""  # closed without an answer
    assert wait_count(sidecar.admin_port, "plaintext", 1) == 1


def _server_serial(port: int, ctx: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_identity_files_are_reloaded_when_they_change(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"))
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    first = _server_serial(port, good)
    chain, key = pki.root.leaf(WEB)
    pki.files("web", chain, key)  # the files the sidecar was started with
    want = x509.load_pem_x509_certificate(chain).serial_number
    deadline = time.monotonic() + 10
    while (serial := _server_serial(port, good)) == first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serial == want
    # A broken key file: the current identity stays, and the log says why.
    (tmp_path / "web.key").write_text("not a key")
    deadline = time.monotonic() + 10
    while "identity files not reloaded" not in sidecar.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "identity files not reloaded" in sidecar.logs()
    assert _server_serial(port, good) == want
    assert mtls_get(port, good)[0] == 200


def test_sighup_reloads_the_identity_files(tmp_path: Path, pki: Pki, procs: list[Proc]) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"), "http", "--no-watch")
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    first = _server_serial(port, good)
    chain, key = pki.root.leaf(WEB)
    pki.files("web", chain, key)
    time.sleep(1.5)  # no watcher: nothing changes by itself
    assert _server_serial(port, good) == first
    sidecar.popen.send_signal(signal.SIGHUP)
    want = x509.load_pem_x509_certificate(chain).serial_number
    deadline = time.monotonic() + 10
    while (serial := _server_serial(port, good)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serial == want


def test_http2_by_alpn_carries_the_verified_identity(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    only_client = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: client-only, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["plait.local/ns/default/sa/client"]}}]}]
"""
    port, _ = start_web(tmp_path, pki, procs, peer_auth("STRICT") + only_client)
    for name, spiffe, want in (
        ("client", CLIENT, "HTTP/2 200"),
        ("other", "spiffe://plait.local/ns/default/sa/other", "HTTP/2 403"),
    ):
        cert, key = pki.files(name, *pki.root.leaf(spiffe))
        r = subprocess.run(
            [
                "curl",
                "-sS",
                "-i",
                "--http2",
                "-k",
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--max-time",
                "10",
                f"https://127.0.0.1:{port}/h2",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip  (-k: the server certificate names a SPIFFE ID, not 127.0.0.1)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(want), (name, r.stdout[:200])


def test_strict_without_an_identity_refuses_tls_as_no_identity(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(
        write_config(tmp_path, mesh(app.port, port, admin, peer_auth("STRICT"))), admin
    )
    procs.append(sidecar)
    good = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert refused(port, good)
    assert wait_count(admin, "no_identity", 1) == 1


def test_permissive_sniffs_requests_that_arrive_one_byte_at_a_time(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    """The sniffer decides on the first two bytes however they are split: a plaintext
    request and a TLS handshake, each written one byte per segment, are both served."""
    import socket
    import ssl

    port, _ = start_web(tmp_path, pki, procs, peer_auth("PERMISSIVE"))

    def dribble(sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(0.002)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dribble(s, b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    ctx = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    ctx.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:  # the handshake, our side written a byte at a time
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                dribble(s, outgoing.read())
                incoming.write(s.recv(65536))
        tls.write(b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        dribble(s, outgoing.read())
        reply = b""
        while not reply.endswith(b"}") and (chunk := s.recv(65536)):
            incoming.write(chunk)
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
    assert reply.startswith(b"HTTP/1.1 200") and b'"path": "/tls"' in reply


def test_strict_serves_requests_sent_one_tls_record_per_byte_on_one_connection(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    """Each plaintext byte in a TLS record (and a TCP segment) of its own, then two more
    requests on the same connection, one of them with a body larger than the read buffer:
    the decrypted reads reach the codec whatever their size, and the buffer is reused."""
    port, _ = start_web(tmp_path, pki, procs, peer_auth("STRICT"))
    ctx = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    ctx.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        s.sendall(outgoing.read())

        pending = bytearray()

        def response() -> bytes:
            """One whole response (head, then content-length bytes of body)."""
            while True:
                head, sep, rest = bytes(pending).partition(b"\r\n\r\n")
                if sep:
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    if len(rest) >= length:
                        del pending[: len(head) + 4 + length]
                        return head + sep + rest[:length]
                try:
                    got = tls.read(65536)
                    assert got, f"close_notify after {len(pending)} bytes of a response"
                    pending.extend(got)
                except ssl.SSLWantReadError:
                    data = s.recv(65536)
                    assert data, f"the connection closed after {len(pending)} bytes of a response"
                    incoming.write(data)

        for byte in b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n":
            tls.write(bytes([byte]))  # a record of one byte
            s.sendall(outgoing.read())
            time.sleep(0.001)
        assert response().startswith(b"HTTP/1.1 200")
        body = b"z" * 200_000
        tls.write(b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s.sendall(outgoing.read())
        second = response()
        assert second.startswith(b"HTTP/1.1 200") and b'"path": "/two"' in second
        assert b"z" * 1000 in second  # the echo saw the body
        tls.write(b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.sendall(outgoing.read())
        assert b'"path": "/three"' in response()


def test_bytes_that_are_not_tls_after_the_handshake_are_alerted_counted_and_closed(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    """A verified peer that sends a forged record after the handshake: the sidecar answers
    with an alert, closes, counts ``tls_error``, logs no traceback, and goes on serving."""
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT"))
    ctx = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    ctx.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        s.sendall(outgoing.read())
        s.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data no key made
        reply = b""
        while chunk := s.recv(4096):  # the alert, then the close
            reply += chunk
    assert reply, "closed without an alert"
    assert wait_count(sidecar.admin_port, "tls_error", 1) == 1
    status, _, _ = mtls_get(port, ctx, "/after")
    assert status == 200
    assert "Traceback" not in sidecar.logs()
