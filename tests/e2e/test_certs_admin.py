"""The sidecar admin's ``/certs`` and ``plait_cert_*`` metrics with an identity from files,
in one process and summed by a ``--workers`` supervisor; a refused reload is reported."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import Proc, free_port, http_get, simple_config, start_sidecar, write_config
from tests.support.controlplane import wait_for
from tests.support.mtls import metric
from tests.support.pki import Authority

from ._mtls import SERVER, identity_args, identity_dir

pytestmark = pytest.mark.e2e


def test_certs_and_metrics_follow_the_identity_files(tmp_path: Path, procs: list[Proc]) -> None:
    ca = Authority.create("files root")
    where = identity_dir(tmp_path, "id", ca, SERVER, ca.pem)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, simple_config(9, port, admin))
    sidecar = start_sidecar(cfg, admin, *identity_args(where), "--workers", "2", "--no-watch")
    procs.append(sidecar)

    certs = json.loads(http_get(admin, "/certs")[2])
    leaf = x509.load_pem_x509_certificate((where / "chain.pem").read_bytes())
    assert certs["source"] == "files"
    assert certs["leaf"]["spiffe_id"] == SERVER
    assert certs["leaf"]["serial"] == format(leaf.serial_number, "x")
    assert certs["leaf"]["issuer"] == "O=files root"
    assert [r["subject"] for r in certs["trust_bundle"]] == ["O=files root"]
    assert certs["next_renewal"] is None
    # two workers, each loaded the files once: counts summed, the expiry of the leaf
    assert metric(admin, "plait_cert_renewals_total", result="ok") == 2
    assert 3000 < metric(admin, "plait_cert_expiry_seconds") <= 3600

    # a broken key (read on SIGHUP): each worker keeps its identity, and says why
    (where / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n")
    sidecar.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: metric(admin, "plait_cert_renewals_total", result="error") == 2)
    after = json.loads(http_get(admin, "/certs")[2])
    assert after["leaf"]["serial"] == certs["leaf"]["serial"]
    assert "--identity-key" in after["last_error"]["error"]

    # a new leaf: the next reload takes it
    fresh = identity_dir(tmp_path, "id", ca, SERVER, ca.pem)
    new_serial = x509.load_pem_x509_certificate((fresh / "chain.pem").read_bytes()).serial_number
    sidecar.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: json.loads(http_get(admin, "/certs")[2])["leaf"]["serial"]
             == format(new_serial, "x"))  # fmt: skip
    wait_for(lambda: metric(admin, "plait_cert_generation") == 2)
