"""``plait workload token``, ``plait ca status|rotate``, ``plait cert inspect`` and the control
plane's CA flags, run as an operator runs them: real processes, real HTTP."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import PY, Proc
from tests.support.controlplane import api_context, plait, start_control_plane
from tests.support.pki import Authority, key_pem

from .conftest import make_csr

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("cp")
    proc = start_control_plane(tmp, extra=("--trust-domain", "example.org", "--cert-ttl", "120"))
    yield proc
    proc.stop()


def _post_certificate(cp: Proc, body: dict[str, str]) -> tuple[int, dict[str, str]]:
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", cp.extra["api"], timeout=10,
                                      context=api_context(cp))  # fmt: skip
    try:
        conn.request("POST", "/api/v1/certificates", body=json.dumps(body))
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_workload_token_gets_a_certificate_of_that_identity(cp: Proc, tmp_path: Path) -> None:
    r = plait(cp, "workload", "token", "-n", "shop", "-s", "cart", "--ttl", "2m")
    token = r.stdout.strip()
    assert "spiffe://example.org/ns/shop/sa/cart" in r.stderr and "single use" in r.stderr
    status, out = _post_certificate(cp, {"token": token, "csr": make_csr()[1]})
    assert status == 200 and out["spiffeId"] == "spiffe://example.org/ns/shop/sa/cart", out
    chain = x509.load_pem_x509_certificates(out["chain"].encode())
    assert (chain[0].not_valid_after_utc - chain[0].not_valid_before_utc).total_seconds() == 180

    (tmp_path / "chain.pem").write_text(out["chain"])
    shown = plait(cp, "cert", "inspect", str(tmp_path / "chain.pem")).stdout
    assert "SPIFFE ID:   spiffe://example.org/ns/shop/sa/cart" in shown
    assert f"Serial:      {out['serial']}" in shown and "O=plait example.org" in shown
    info = json.loads(
        plait(cp, "cert", "inspect", str(tmp_path / "chain.pem"), "-o", "json").stdout
    )
    assert info["spiffeId"] == out["spiffeId"] and len(info["chain"]) == 2
    assert 100 < info["secondsLeft"] <= 120
    assert [c["ca"] for c in info["chain"]] == [False, True]


def test_workload_token_refusals(cp: Proc) -> None:
    r = plait(cp, "workload", "token", "-s", "a/b", check=False)
    assert r.returncode == 1 and "one path segment" in r.stderr
    r = plait(cp, "workload", "token", "-s", "web", "--ttl", "soon", check=False)
    assert r.returncode == 2 and "expected a duration" in r.stderr
    r = plait(cp, "workload", "token", "-s", "web", "--ttl", "48h", check=False)
    assert r.returncode == 1 and "at most" in r.stderr


def test_ca_status_and_rotate(cp: Proc) -> None:
    before = plait(cp, "ca", "status").stdout
    assert "Phase:        stable" in before and "Trust domain: example.org" in before
    token = plait(cp, "workload", "token", "-s", "web").stdout.strip()
    assert _post_certificate(cp, {"token": token, "csr": make_csr()[1]})[0] == 200
    rotated = plait(cp, "ca", "rotate").stdout
    assert "Phase:        rotating:" in rotated and "leaves still on the old root" in rotated
    assert rotated.count("current") == 1 and rotated.count("previous") == 1
    again = plait(cp, "ca", "rotate", check=False)
    assert again.returncode == 1 and "rotation is in progress" in again.stderr
    status = json.loads(plait(cp, "ca", "status", "-o", "json").stdout)
    assert status["phase"] == "rotating" and status["leavesOnOldRoot"] >= 1
    assert status["leafTTLSeconds"] == 120


def test_cert_inspect_of_a_file_that_is_not_a_certificate(cp: Proc, tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_text("hello")
    r = plait(cp, "cert", "inspect", str(tmp_path / "x.pem"), check=False)
    assert r.returncode == 1 and "not a PEM certificate chain" in r.stderr


def _control_plane(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PY,
            "-m",
            "plait.core.ops.cli",
            "control-plane",
            "--data-dir",
            str(tmp / "data"),
            "--api-port",
            "0",
            "--xds-port",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_bad_ca_flags_are_refused_before_start(tmp_path: Path) -> None:
    r = _control_plane(tmp_path, "--trust-domain", "Example.org")
    assert r.returncode == 2 and "--trust-domain" in r.stderr and "lower-case" in r.stderr
    r = _control_plane(tmp_path, "--cert-ttl", "30")
    assert r.returncode == 2 and "at least 60" in r.stderr


def test_operator_root_is_imported_and_an_unsafe_key_refused(tmp_path: Path) -> None:
    root = Authority.create("operator root")
    (tmp_path / "root.pem").write_bytes(root.pem)
    key = tmp_path / "root.key"
    key.write_bytes(key_pem(root.key))
    key.chmod(0o644)
    r = _control_plane(
        tmp_path, "--ca-root-cert", str(tmp_path / "root.pem"), "--ca-root-key", str(key)
    )
    assert r.returncode == 1 and f"chmod 600 {key}" in r.stderr, r.stderr
    key.chmod(0o600)
    cp = start_control_plane(
        tmp_path,
        data_dir=tmp_path / "data",
        extra=("--ca-root-cert", str(tmp_path / "root.pem"), "--ca-root-key", str(key)),
    )
    try:
        status = json.loads(plait(cp, "ca", "status", "-o", "json").stdout)
        assert status["roots"][0]["subject"] == "O=operator root"
        imported = next((tmp_path / "data" / "ca").glob("gen-*/root.key"))
        assert stat.S_IMODE(imported.stat().st_mode) == 0o600
        token = plait(cp, "workload", "token", "-s", "web").stdout.strip()
        status_code, out = _post_certificate(cp, {"token": token, "csr": make_csr()[1]})
        assert status_code == 200
        inter = x509.load_pem_x509_certificates(out["chain"].encode())[1]
        inter.verify_directly_issued_by(root.cert)
    finally:
        cp.stop()
