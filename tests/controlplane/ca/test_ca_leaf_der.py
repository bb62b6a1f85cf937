"""The leaf encoder (``ca/_leafder.py``) against ``cryptography``'s certificate builder.

ECDSA signatures are randomised, so the two are compared on the signed part: the
TBSCertificate of a directly encoded leaf must be byte for byte the one the builder
makes from the same inputs, and the leaf's signature must verify with the issuer's key.
The CA's :class:`LeafSigner` is held to the same, with the validity it derives from the
time of the request (clock skew, whole seconds, the issuer's expiry).
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
from plait.controlplane.ca._leafder import SKEW, LeafShape, LeafSigner
from plait.controlplane.ca._x509 import ca_cert

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
    key = _public_key(key_type)
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


_LONG_ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())
_LONG_ISSUER = ca_cert(
    key=_LONG_ISSUER_KEY, common_name="valid past 2050", trust_domain="plait.local",
    now=dt.datetime(2040, 1, 1, tzinfo=dt.UTC), lifetime=dt.timedelta(days=365 * 20),
    path_length=0,
)  # fmt: skip
_PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("key_type", "now", "ttl", "extra", "long_issuer"),
    [
        ("p256", dt.datetime(2026, 12, 6, 3, 4, 5, 678901, tzinfo=dt.UTC), 3600, [], False),
        ("rsa", dt.datetime(2026, 12, 6, 3, 4, 59, 999999, tzinfo=dt.UTC), 60, [], False),
        ("p384", dt.datetime(2026, 12, 6, 5, 4, 5, tzinfo=_PLUS_TWO), 3600, [], False),
        # a TTL past the issuer's expiry ends with the issuer
        ("p256", dt.datetime(2026, 12, 6, 3, 4, 5, 1, tzinfo=dt.UTC), 2 * 365 * 86400, [],
         False),
        ("p256", dt.datetime(2026, 12, 6, 3, 4, 5, tzinfo=dt.UTC), 3600,
         [x509.DNSName("cp.example"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], False),
        # not-before in UTCTime (2049), not-after in GeneralizedTime (2050)
        ("p256", dt.datetime(2049, 12, 31, 23, 59, 30, 250000, tzinfo=dt.UTC), 60, [], True),
    ],
)  # fmt: skip
def test_a_signers_leaf_is_the_builders_leaf_with_its_validity(
    tmp_path: Path,
    key_type: str,
    now: dt.datetime,
    ttl: float,
    extra: list[x509.GeneralName],
    long_issuer: bool,
) -> None:
    if long_issuer:
        issuer, issuer_key = _LONG_ISSUER, _LONG_ISSUER_KEY
    else:
        gen = open_ca(tmp_path).ca.state.current
        issuer, issuer_key = gen.intermediate, gen.intermediate_key
    signer = LeafSigner(issuer, issuer_key)
    key = _public_key(key_type)
    # leaves of one second share their encoded times; the next seconds get their own
    for offset in (0.0, 0.3, 1.0, 61.5):
        when = now + dt.timedelta(seconds=offset)
        signed = signer.leaf(key, SPIFFE, when, dt.timedelta(seconds=ttl), extra)
        not_before = (when - SKEW).astimezone(dt.UTC).replace(microsecond=0)
        not_after = min(when + dt.timedelta(seconds=ttl), issuer.not_valid_after_utc)
        not_after = not_after.astimezone(dt.UTC).replace(microsecond=0)
        sans = [x509.UniformResourceIdentifier(SPIFFE), *extra]
        ref = _reference(issuer, issuer_key, key, signed.serial, not_before, not_after, sans)
        leaf = x509.load_der_x509_certificate(signed.der)
        assert leaf.tbs_certificate_bytes == ref.tbs_certificate_bytes, offset
        leaf.verify_directly_issued_by(issuer)
        assert (signed.not_before, signed.not_after) == (
            leaf.not_valid_before_utc,
            leaf.not_valid_after_utc,
        )
        assert signed.serial == leaf.serial_number


def _public_key(key_type: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """A fresh public key: ``rsa`` (2048 bits), ``p256`` or ``p384``."""
    if key_type == "rsa":
        return rsa.generate_private_key(65537, 2048).public_key()
    curve = ec.SECP256R1() if key_type == "p256" else ec.SECP384R1()
    return ec.generate_private_key(curve).public_key()
