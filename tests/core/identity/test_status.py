"""What ``/certs`` and the ``plait_cert_*`` metrics report of a real identity store."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from plait.core.identity import CertStore
from plait.core.identity.files import IdentityFiles
from plait.core.identity.status import certs_report, metric_values
from tests.support.pki import Authority

WEB = "spiffe://plait.local/ns/shop/sa/web"


def test_report_shows_leaf_chain_bundle_and_renewals(tmp_path: object) -> None:
    ca, other = Authority.create("mesh root"), Authority.create("next root")
    store = CertStore()
    store.source = "agent"
    chain, key = ca.leaf(WEB)
    store.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem + other.pem)
    store.note_failure("the CA at http://127.0.0.1:1 is unavailable: refused")
    leaf_cert = x509.load_pem_x509_certificate(chain)
    now = leaf_cert.not_valid_after_utc - dt.timedelta(seconds=600)

    report = certs_report(store, now)

    assert report["source"] == "agent"
    assert report["generation"] == 1
    leaf = report["leaf"]
    assert leaf["spiffe_id"] == WEB
    assert leaf["serial"] == format(leaf_cert.serial_number, "x")
    assert leaf["issuer"] == "O=mesh root"
    assert leaf["not_after"] == leaf_cert.not_valid_after_utc.isoformat()
    assert leaf["seconds_left"] == 600
    assert [c["spiffe_id"] for c in report["chain"]] == [WEB]
    roots = report["trust_bundle"]
    assert [r["subject"] for r in roots] == ["O=mesh root", "O=next root"]
    assert roots[0]["sha256"] == ca.cert.fingerprint(hashes.SHA256()).hex()
    assert roots[1]["not_after"] == other.cert.not_valid_after_utc.isoformat()
    assert report["renewals"] == {"ok": 1, "error": 1}
    assert "unavailable" in report["last_error"]["error"]
    assert report["last_renewal"] is not None

    values = metric_values(store, now)
    assert values == {"expiry_seconds": 600.0, "generation": 1.0, "ok": 1.0, "error": 1.0}


def test_a_failed_file_reload_is_reported_and_the_identity_kept(tmp_path: object) -> None:
    from pathlib import Path

    where = Path(str(tmp_path))
    ca = Authority.create()
    chain, key = ca.leaf(WEB)
    for name, data in (("c.pem", chain), ("k.pem", key), ("b.pem", ca.pem)):
        (where / name).write_bytes(data)
    files = IdentityFiles(str(where / "c.pem"), str(where / "k.pem"), str(where / "b.pem"))
    store = CertStore()
    files.load(store)
    (where / "k.pem").write_bytes(b"not a key")
    assert not files.reload(store)

    report = certs_report(store)
    assert report["source"] == "files"
    assert report["leaf"]["spiffe_id"] == WEB  # kept
    assert report["renewals"] == {"ok": 1, "error": 1}
    assert "--identity-key" in report["last_error"]["error"]
    assert report["next_renewal"] is None


def test_no_identity_reports_nothing_to_scrape() -> None:
    store = CertStore()
    assert metric_values(store) == {}
    report = certs_report(store)
    assert (report["leaf"], report["chain"], report["trust_bundle"]) == (None, [], [])
