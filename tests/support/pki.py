"""Test certificates: roots, intermediates and SPIFFE leaves made with ``cryptography``.

Each helper returns PEM bytes and keys the way a sidecar or the control plane would
hold them; ``not_after``/``not_before`` let tests make expired or future certificates,
``self_signed_leaf`` a certificate with the right SAN and no chain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "key_pem", "pem", "self_signed_leaf"]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Authority:
    """A test root CA."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "test root") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return pem(self.cert)

    def server_leaf(self, ip: str = "127.0.0.1") -> bytes:
        """PEM of a server certificate for ``ip`` signed by this root, then its key."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        return pem(cert) + key_pem(key)

    def leaf(
        self,
        spiffe_id: str,
        *,
        not_before: dt.timedelta = dt.timedelta(minutes=-5),
        not_after: dt.timedelta = dt.timedelta(hours=1),
    ) -> tuple[bytes, bytes]:
        """``(chain_pem, key_pem)`` of a leaf for ``spiffe_id`` signed by this root."""
        key = ec.generate_private_key(ec.SECP256R1())
        return pem(_leaf(key, self.key, self.cert.subject, spiffe_id, not_before, not_after)), (
            key_pem(key)
        )


def self_signed_leaf(spiffe_id: str) -> tuple[bytes, bytes]:
    """A leaf with the right SAN that no CA signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "self")])
    cert = _leaf(key, key, name, spiffe_id, dt.timedelta(minutes=-5), dt.timedelta(hours=1))
    return pem(cert), key_pem(key)


def _leaf(
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    spiffe_id: str,
    not_before: dt.timedelta,
    not_after: dt.timedelta,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]) if signer is not key else issuer)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() + not_before)
        .not_valid_after(_now() + not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
