"""The leaf encoder (``ca/_leafder.py``) against ``cryptography``'s certificate builder.

ECDSA signatures are randomised, so the two are compared on the signed part: the
TBSCertificate of a directly encoded leaf must be byte for byte the one the builder
makes from the same inputs, and the leaf's signature must verify with the issuer's key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plait.controlplane.ca import open_ca
from plait.controlplane.ca._leafder import LeafShape

SPIFFE = "spiffe://plait.local/ns/bench/sa/web"


def _reference(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    is_rsa = isinstance(key, rsa.RSAPublicKey)
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("key_type", "years", "serial", "sans"),
    [
        ("p256", 0, x509.random_serial_number(), [x509.UniformResourceIdentifier(SPIFFE)]),
        ("p384", 0, 1, [x509.UniformResourceIdentifier(SPIFFE)]),
        ("rsa", 0, 2**159 - 1, [x509.UniformResourceIdentifier(SPIFFE)]),
        # past 2049 the validity switches to GeneralizedTime; long SANs need long lengths
        ("p256", 30, 0x80, [x509.UniformResourceIdentifier(SPIFFE + "x" * 300),
                            x509.DNSName("cp.example"),
                            x509.IPAddress(ipaddress.ip_address("::1"))]),
    ],
)  # fmt: skip
def test_a_directly_encoded_leaf_is_the_builders_leaf(
    tmp_path: Path, key_type: str, years: int, serial: int, sans: list[x509.GeneralName]
) -> None:
    gen = open_ca(tmp_path).ca.state.current
    if key_type == "rsa":
        key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = rsa.generate_private_key(
            65537, 2048
        ).public_key()
    else:
        curve = ec.SECP256R1() if key_type == "p256" else ec.SECP384R1()
        key = ec.generate_private_key(curve).public_key()
    not_before = dt.datetime(2026, 12, 6, 3, 4, 5, 678, tzinfo=dt.UTC) + dt.timedelta(
        days=365 * years
    )
    not_after = not_before + dt.timedelta(hours=1)
    shape = LeafShape(gen.intermediate, gen.intermediate_key, key_type == "rsa")
    der = shape.certificate(
        public_key=key, serial=serial, not_before=not_before, not_after=not_after, sans=sans
    )
    leaf = x509.load_der_x509_certificate(der)
    ref = _reference(gen.intermediate, gen.intermediate_key, key, serial, not_before,
                     not_after, sans)  # fmt: skip
    assert leaf.tbs_certificate_bytes == ref.tbs_certificate_bytes
    assert leaf.signature_algorithm_oid == ref.signature_algorithm_oid
    leaf.verify_directly_issued_by(gen.intermediate)  # raises if the signature is wrong
    assert leaf.serial_number == serial and leaf.not_valid_after_utc == not_after.replace(
        microsecond=0
    )
