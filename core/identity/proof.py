"""The renewal proof: how a workload shows the CA it holds its current, unexpired leaf.

Theory of operation: a renewal carries the current chain, a Unix timestamp and a
signature, by the current leaf's private key, over :func:`renewal_message` (a fixed
label, the timestamp and the new CSR's DER bytes). The CA checks that it issued the
leaf, that the leaf has not expired, that the timestamp is within a few minutes of its
clock and that the signature verifies with the leaf's public key; the new certificate
gets the leaf's identity. Binding the CSR into the message means a captured proof can
only ever certify the key of that CSR, which the eavesdropper does not hold. Both sides
use this module, so the message has one definition.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["renewal_message", "sign_renewal", "verify_renewal"]

_LABEL = b"plait renewal v1\n"
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def renewal_message(csr: x509.CertificateSigningRequest, timestamp: int) -> bytes:
    return _LABEL + str(int(timestamp)).encode("ascii") + b"\n" + csr.public_bytes(Encoding.DER)


def sign_renewal(key: PrivateKeyTypes, csr: x509.CertificateSigningRequest, timestamp: int) -> str:
    """The base64 signature of the renewal message by the current leaf's ``key``."""
    message = renewal_message(csr, timestamp)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(f"{type(key).__name__} keys cannot sign a renewal")
    return base64.b64encode(sig).decode("ascii")


def verify_renewal(
    leaf: x509.Certificate, csr: x509.CertificateSigningRequest, timestamp: int, signature: str
) -> bool:
    """Whether ``signature`` is the leaf's key's signature over the renewal message."""
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    message = renewal_message(csr, timestamp)
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, message, _ECDSA_SHA256)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True
