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
