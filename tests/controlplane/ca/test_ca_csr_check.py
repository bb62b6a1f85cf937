"""The CA's CSR check and its answer, through the API as a sidecar meets them.

The CSR's own signature is checked with the key read once from it (``_x509.check_csr``):
these tests hold it to what ``cryptography``'s ``is_signature_valid`` accepts, for the
key types and hashes the CA takes and for CSRs that must be refused (a signature by
another key, an altered request, an ECDSA algorithm on an RSA key). The answer's JSON
is put together from its PEM parts (``_service.CAService.answer``): it must be the
compact JSON of its fields, consistent with the leaf it carries.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from plait.controlplane.ca._x509 import _signed_by_own_key

from .conftest import CAServer

_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")  # AlgorithmIdentifier


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _csr(
    key: Any,
    algorithm: hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512,
    name: str = "plait-test-a",
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.DER)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _signed_by(request: bytes, signer: ec.EllipticCurvePrivateKey | bytes) -> bytes:
    """A CSR of ``request``'s CertificationRequestInfo, signed ecdsa-with-SHA256 by ``signer``
    (or with ``signer`` as its signature bytes)."""
    info = x509.load_der_x509_csr(request).tbs_certrequest_bytes
    if isinstance(signer, bytes):
        signature = signer
    else:
        signature = signer.sign(info, ec.ECDSA(hashes.SHA256()))
    return _der(0x30, info + _ECDSA_SHA256 + _der(0x03, b"\x00" + signature))


def _flip_signature(der: bytes) -> bytes:
    out = bytearray(der)
    out[-8] ^= 0x01  # inside the signature: still parses, no longer verifies
    return bytes(out)


GENUINE: dict[str, Callable[[], bytes]] = {
    "P-256, SHA-256": lambda: _csr(_p256(), hashes.SHA256()),
    "P-384, SHA-384": lambda: _csr(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
    "P-256, SHA-512": lambda: _csr(_p256(), hashes.SHA512()),
    "P-256, SHA-224": lambda: _csr(_p256(), hashes.SHA224()),
    "RSA 2048, SHA-256": lambda: _csr(_rsa(), hashes.SHA256()),
}

FORGED: dict[str, Callable[[], bytes]] = {
    "signed by another key": lambda: _signed_by(_csr(_p256(), hashes.SHA256()), _p256()),
    "request altered after signing": lambda: _csr(_p256(), hashes.SHA256()).replace(
        b"plait-test-a", b"plait-test-b"
    ),
    "P-384 signature altered": lambda: _flip_signature(
        _csr(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    ),
    "RSA signature altered": lambda: _flip_signature(_csr(_rsa(), hashes.SHA256())),
    "ECDSA algorithm on an RSA key": lambda: _signed_by(_csr(_rsa(), hashes.SHA256()), _p256()),
    "signature not DER": lambda: _signed_by(_csr(_p256(), hashes.SHA256()), b"\x01" * 64),
}


def _pem(der: bytes) -> str:
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("make", GENUINE.values(), ids=GENUINE.keys())
def test_genuine_csrs_of_every_accepted_kind_get_a_leaf_for_their_key(
    server: CAServer, make: Callable[[], bytes]
) -> None:
    der = make()
    status, out = server.certificate({"token": server.token(), "csr": _pem(der)})
    assert status == 200, out
    leaf = x509.load_pem_x509_certificates(out["chain"].encode())[0]
    assert leaf.public_key() == x509.load_der_x509_csr(der).public_key()


@pytest.mark.parametrize("make", FORGED.values(), ids=FORGED.keys())
def test_csrs_whose_signature_does_not_verify_are_refused_and_keep_the_token(
    server: CAServer, make: Callable[[], bytes]
) -> None:
    token = server.token()
    status, out = server.certificate({"token": token, "csr": _pem(make())})
    assert status == 400 and out["reason"] == "bad_csr", out
    status, out = server.certificate({"token": token, "csr": _pem(_csr(_p256(), hashes.SHA256()))})
    assert status == 200, out


@pytest.mark.parametrize(
    "make", [*GENUINE.values(), *FORGED.values()], ids=[*GENUINE.keys(), *FORGED.keys()]
)
def test_the_check_with_the_key_read_once_agrees_with_cryptography(
    make: Callable[[], bytes],
) -> None:
    csr = x509.load_der_x509_csr(make())
    try:
        expected: bool | type[Exception] = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        expected = type(exc)
    try:
        got: bool | type[Exception] = _signed_by_own_key(csr, csr.public_key())
    except (ValueError, TypeError) as exc:
        got = type(exc)
    assert got == expected


def test_the_answer_is_the_compact_json_of_the_leaf_it_carries(server: CAServer) -> None:
    csr = _pem(GENUINE["P-256, SHA-256"]())
    body = json.dumps({"token": server.token("shop", "cart"), "csr": csr})
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=server.tls)
    try:
        conn.request("POST", "/api/v1/certificates", body=body,
                     headers={"content-type": "application/json"})  # fmt: skip
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    assert resp.status == 200 and resp.getheader("content-type") == "application/json", raw
    out = json.loads(raw)
    assert raw == json.dumps(out).encode()
    assert list(out) == ["spiffeId", "chain", "bundle", "serial", "notBefore", "notAfter"]
    leaf, intermediate = x509.load_pem_x509_certificates(out["chain"].encode())
    _, _, bundle = server.request("GET", "/api/v1/ca/bundle", admin=False)
    assert out["bundle"] == bundle["bundle"]
    assert out["spiffeId"] == "spiffe://plait.local/ns/shop/sa/cart"
    assert out["serial"] == format(leaf.serial_number, "x")
    assert dt.datetime.fromisoformat(out["notBefore"]) == leaf.not_valid_before_utc
    assert dt.datetime.fromisoformat(out["notAfter"]) == leaf.not_valid_after_utc
    leaf.verify_directly_issued_by(intermediate)
