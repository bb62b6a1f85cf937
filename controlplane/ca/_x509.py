"""Certificate building for the CA: roots, intermediates, cross-signed roots and leaves.

Theory of operation: pure functions of keys, names and a time ``now`` (the CA's clock
is injected, so tests can move it). Every certificate carries a Subject Key Identifier
and (except self-signed roots) an Authority Key Identifier, so path building matches an
issuer by key and not only by name; that is what lets a peer that trusts only the old
root follow ``leaf -> new intermediate -> cross-signed new root -> old root`` during a
root rotation, while a peer that trusts the new root stops at the new root.

A leaf gets only what the CA decides: the public key of the CSR (whose signature is
checked first), an empty subject, one URI SAN (the SPIFFE ID the caller proved,
critical because the subject is empty), EKU serverAuth + clientAuth, KeyUsage
digitalSignature (+ keyEncipherment for RSA keys), and a not-before a minute in the
past to absorb clock skew between hosts. Nothing of the CSR's subject or extensions is
copied.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from ._issued import LeafDER
from ._leafder import SKEW, LeafSigner

__all__ = [
    "SKEW",
    "CSRError",
    "CheckedCSR",
    "ca_cert",
    "check_csr",
    "cross_sign",
    "fingerprint",
    "leaf_cert",
    "leaf_der",
    "pem",
]

CAKey = ec.EllipticCurvePrivateKey
_CURVES = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA = 2048


class CSRError(ValueError):
    """The CSR cannot be used; the message says why."""


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class CheckedCSR:
    """A CSR whose signature verified, with its public key (read once)."""

    csr: x509.CertificateSigningRequest
    public_key: PublicKey

    @classmethod
    def of(cls, csr: x509.CertificateSigningRequest) -> CheckedCSR:
        """A CSR from a trusted caller (the control plane's own), without the checks."""
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CSRError(f"{type(key).__name__} keys not accepted")
        return cls(csr, key)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(common_name: str, trust_domain: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"plait {trust_domain}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def ca_cert(
    *,
    key: CAKey,
    common_name: str,
    trust_domain: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
    path_length: int,
    issuer: tuple[x509.Certificate, CAKey] | None = None,
) -> x509.Certificate:
    """A CA certificate for ``key``: self-signed (a root) or signed by ``issuer``."""
    subject = _name(common_name, trust_domain)
    not_after = now + lifetime
    builder = x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
    signer = key
    if issuer is None:
        builder = builder.issuer_name(subject)
    else:
        builder = builder.issuer_name(issuer[0].subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
        signer = issuer[1]
        not_after = min(not_after, issuer[0].not_valid_after_utc)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )


def cross_sign(
    new_root: x509.Certificate, old_root: x509.Certificate, old_key: CAKey
) -> x509.Certificate:
    """The new root's subject and key, issued by the old root (valid as long as both are)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(new_root.subject)
        .issuer_name(old_root.subject)
        .public_key(new_root.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(new_root.not_valid_before_utc)
        .not_valid_after(min(new_root.not_valid_after_utc, old_root.not_valid_after_utc))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(old_key.public_key()),
            critical=False,
        )
    )
    for ext in new_root.extensions:  # basic constraints, key usage, subject key id
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(old_key, hashes.SHA256())


def check_csr(csr_pem: bytes | str) -> CheckedCSR:
    """The parsed CSR, if its signature verifies and its key is EC P-256/P-384 or RSA >= 2048.

    Raises:
        CSRError: not a PEM CSR, a bad signature, or an unaccepted key.
    """
    data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CSRError(f"not a PEM certificate signing request ({exc})") from None
    try:
        key = csr.public_key()
        valid = _signed_by_own_key(csr, key)
    except (ValueError, TypeError) as exc:
        raise CSRError(f"cannot read the CSR's key ({exc})") from None
    if not valid:
        raise CSRError("the CSR's signature does not verify with its own key")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise CSRError(f"EC curve {key.curve.name} not accepted (expected P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA:
            raise CSRError(f"RSA key of {key.key_size} bits (expected at least {_MIN_RSA})")
    else:
        raise CSRError(f"{type(key).__name__} keys not accepted (expected EC P-256/P-384 or RSA)")
    return CheckedCSR(csr, key)


_ECDSA_HASHES: dict[x509.ObjectIdentifier, hashes.HashAlgorithm] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: hashes.SHA256(),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: hashes.SHA384(),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: hashes.SHA512(),
}


def _signed_by_own_key(csr: x509.CertificateSigningRequest, key: object) -> bool:
    """``csr.is_signature_valid`` with the key already read (``csr.public_key()``).

    ``is_signature_valid`` reads the key from the CSR again; for an EC key and an ECDSA
    algorithm this makes the same call it makes (the key's ``verify`` of the signature over
    the CertificationRequestInfo, with the algorithm's hash) on the key read once. Any
    other key or algorithm goes through ``is_signature_valid`` itself.
    """
    hash_alg = _ECDSA_HASHES.get(csr.signature_algorithm_oid)
    if hash_alg is None or not isinstance(key, ec.EllipticCurvePublicKey):
        return csr.is_signature_valid
    try:
        key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hash_alg))
    except InvalidSignature:
        return False
    return True


def leaf_der(
    *,
    csr: CheckedCSR,
    spiffe_id: str,
    issuer: x509.Certificate,
    issuer_key: CAKey,
    now: dt.datetime,
    ttl: dt.timedelta,
    extra_sans: Sequence[x509.GeneralName] = (),
) -> LeafDER:
    """The workload certificate for a checked CSR (see the module docstring), DER.

    ``extra_sans`` (DNS names, IP addresses) are added after the SPIFFE ID: only the
    control plane's own serving certificate has them. Encoded by :class:`LeafSigner`
    (the CA keeps one per intermediate; this keeps the last few issuers').
    """
    return _signer(issuer, issuer_key).leaf(csr.public_key, spiffe_id, now, ttl, extra_sans)


def leaf_cert(
    *,
    csr: CheckedCSR | x509.CertificateSigningRequest,
    spiffe_id: str,
    issuer: x509.Certificate,
    issuer_key: CAKey,
    now: dt.datetime,
    ttl: dt.timedelta,
    extra_sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """:func:`leaf_der`, parsed."""
    checked = csr if isinstance(csr, CheckedCSR) else CheckedCSR.of(csr)
    leaf = leaf_der(csr=checked, spiffe_id=spiffe_id, issuer=issuer, issuer_key=issuer_key,
                    now=now, ttl=ttl, extra_sans=extra_sans)  # fmt: skip
    return x509.load_der_x509_certificate(leaf.der)


@functools.lru_cache(maxsize=8)
def _signer(issuer: x509.Certificate, issuer_key: CAKey) -> LeafSigner:
    return LeafSigner(issuer, issuer_key)
