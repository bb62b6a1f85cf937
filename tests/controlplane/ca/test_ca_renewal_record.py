"""A renewal is accepted only for the very certificate the CA recorded, old ledgers included.

The CA recognises a presented leaf by the SHA-256 its ledger recorded at issuance; a
certificate that copies an issued leaf's serial number, issuer name and identity but
carries another key must still be refused, and a ledger written before leaves had
fingerprints is upgraded in place, its leaves renewing through the signature check.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plait.core.identity.proof import sign_renewal

from .conftest import CAServer, ca_server, make_csr

_OLD_SCHEMA = """
CREATE TABLE leaves (
    serial TEXT PRIMARY KEY, identity TEXT NOT NULL, not_after REAL NOT NULL,
    root TEXT NOT NULL, issued_at REAL NOT NULL);
CREATE INDEX leaves_root ON leaves (root, not_after);
CREATE TABLE used_tokens (id TEXT PRIMARY KEY, expires REAL NOT NULL);
"""


def _issue(server: CAServer) -> tuple[Any, dict[str, Any]]:
    key, csr = make_csr()
    status, out = server.certificate({"token": server.token("shop", "cart"), "csr": csr})
    assert status == 200, out
    return key, out


def _renewal(key: Any, chain: str, when: float) -> dict[str, Any]:
    _, csr_pem = make_csr()
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    proof = {"chain": chain, "timestamp": int(when), "signature": sign_renewal(key, csr, int(when))}
    return {"csr": csr_pem, "renewal": proof}


def _lookalike(chain: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A certificate copying the issued leaf's serial, issuer, SAN and dates, with our key."""
    real = x509.load_pem_x509_certificates(chain.encode())[0]
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(real.subject)
        .issuer_name(real.issuer)
        .public_key(key.public_key())
        .serial_number(real.serial_number)
        .not_valid_before(real.not_valid_before_utc)
        .not_valid_after(real.not_valid_after_utc)
    )
    for ext in real.extensions:
        if not isinstance(ext.value, x509.AuthorityKeyIdentifier):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    fake = builder.sign(key, hashes.SHA256())
    return key, fake.public_bytes(serialization.Encoding.PEM).decode()


def test_a_lookalike_of_an_issued_leaf_with_another_key_is_refused(server: CAServer) -> None:
    key, first = _issue(server)
    thief, fake = _lookalike(first["chain"])
    now = server.clock().timestamp()
    status, out = server.certificate(_renewal(thief, fake, now))
    assert (status, out.get("reason")) == (401, "renewal_foreign_cert"), out
    assert server.certificate(_renewal(key, first["chain"], now))[0] == 200


def test_an_old_ledger_is_upgraded_and_its_leaves_renew_by_signature(tmp_path: Path) -> None:
    ca_dir = tmp_path / "data" / "ca"
    ca_dir.mkdir(parents=True, mode=0o700)
    with sqlite3.connect(ca_dir / "ledger.db") as db:  # a ledger without leaf fingerprints
        db.executescript(_OLD_SCHEMA)
    with ca_server(tmp_path / "data") as server:
        key, first = _issue(server)
        with sqlite3.connect(ca_dir / "ledger.db") as db:  # as if recorded before the upgrade
            changed = db.execute(
                "UPDATE leaves SET fingerprint = NULL WHERE identity = ?", (first["spiffeId"],)
            ).rowcount
        assert changed == 1
        thief, fake = _lookalike(first["chain"])
        now = server.clock().timestamp()
        status, out = server.certificate(_renewal(thief, fake, now))
        assert (status, out.get("reason")) == (401, "renewal_foreign_cert"), out
        status, out = server.certificate(_renewal(key, first["chain"], now))
        assert status == 200, out
        assert out["spiffeId"] == "spiffe://plait.local/ns/shop/sa/cart"
        assert out["serial"] != first["serial"]
        renewed = x509.load_pem_x509_certificates(out["chain"].encode())[0]
        with sqlite3.connect(ca_dir / "ledger.db") as db:  # new leaves get a fingerprint
            (recorded,) = db.execute(
                "SELECT fingerprint FROM leaves WHERE serial = ?", (out["serial"],)
            ).fetchone()
        assert recorded == renewed.fingerprint(hashes.SHA256()).hex()
