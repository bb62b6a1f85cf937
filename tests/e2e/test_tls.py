"""TLS termination on a listener: ALPN picks h2 or http/1.1 (real curl, real certificates)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trustme

from tests.support import (
    PY,
    Proc,
    free_port,
    simple_config,
    start_echo,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e


def _tls_config(tmp_path: Path, upstream: int, port: int, admin: int) -> Path:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    text = simple_config(upstream, port, admin).replace(
        "    filters: []",
        f"    filters: []\n    tls: {{certFile: {tmp_path / 'server.pem'}, "
        f"keyFile: {tmp_path / 'server.pem'}}}",
    )
    return write_config(tmp_path, text)


@pytest.mark.parametrize(
    ("flag", "version"), [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")]
)
def test_alpn_selects_the_protocol(
    tmp_path: Path, procs: list[Proc], flag: str, version: str
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    procs.append(start_sidecar(_tls_config(tmp_path, echo.port, port, admin), admin))
    r = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            flag,
            "--cacert",
            str(tmp_path / "ca.pem"),
            "--max-time",
            "10",
            f"https://localhost:{port}/secure",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(version)
    assert '"path": "/secure"' in r.stdout


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    text = simple_config(9, free_port(), free_port()).replace(
        "    filters: []",
        "    filters: []\n    tls: {certFile: /nonexistent.pem, keyFile: /nonexistent.pem}",
    )
    cfg = write_config(tmp_path, text, "tls.yaml")
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "validate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1
    assert "tls.yaml" in r.stderr and "tls" in r.stderr and "/nonexistent.pem" in r.stderr


def test_clients_closing_tls_connections_leave_no_warning(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """A TLS transport cannot half-close: the listener does not ask for it (asyncio warns
    once per connection otherwise), and every request is still answered."""
    import socket
    import ssl
    import time

    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(_tls_config(tmp_path, echo.port, port, admin), admin)
    procs.append(sidecar)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    for _ in range(5):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:100]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
            try:
                tls.sendall(b"GET /y HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert tls.recv(65536).startswith(b"HTTP/1.1 200")
                tls.unwrap().close()  # close_notify: the client ends the connection first
            finally:
                tls.close()
    time.sleep(0.5)
    assert "eof_received" not in sidecar.log.read_text()
