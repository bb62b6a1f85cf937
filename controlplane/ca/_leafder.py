"""A workload leaf's DER, encoded directly and signed: the CA's per-certificate hot path.

Theory of operation: every leaf of one intermediate has the same shape (docs/identity.md):
X.509 v3, signed ecdsa-with-SHA256 by the intermediate's EC key, the intermediate's
subject as issuer, an empty subject, and the same extensions in the same order
(basicConstraints CA:FALSE critical, keyUsage critical, extKeyUsage serverAuth +
clientAuth, authorityKeyIdentifier, then the critical subjectAltName). Only the serial,
the validity, the subject's public key and the SANs differ. :class:`LeafShape` encodes
the shared parts once per issuer and key type (their DER from ``cryptography``'s own
encoders); :meth:`LeafShape.certificate` concatenates the TBSCertificate
(RFC 5280 §4.1) around the varying fields, signs it with the issuer's key and wraps it
as a Certificate. This does exactly what ``x509.CertificateBuilder.sign`` does for
these inputs (tests/controlplane/ca compare the two byte for byte) at less than half its
cost: the builder spends more time assembling the certificate than the ECDSA signature
takes.

:class:`LeafSigner` is what the CA keeps per intermediate (built again when the
intermediate changes, at a root rotation): the shapes for EC and RSA subject keys and
the intermediate's expiry, so a leaf costs its varying fields and the signature only.
Validity times are encoded per whole second (a small cache: the leaves of one second
share them), a lone SPIFFE ID's SubjectAltName is encoded from the string.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from ._issued import LeafDER

__all__ = ["SKEW", "LeafShape", "LeafSigner"]

SKEW = dt.timedelta(minutes=1)
"""How far in the past a certificate's validity starts (clock skew between hosts)."""

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ALG = bytes.fromhex("300a06082a8648ce3d040302")  # AlgorithmIdentifier ecdsa-with-SHA256
_VERSION = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (v3)
_EMPTY_NAME = b"\x30\x00"
_EKU = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _integer(value: int) -> bytes:
    """A non-negative INTEGER (a serial): minimal big-endian, a 0 byte before a high bit."""
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _whole(when: dt.datetime) -> dt.datetime:
    """``when`` in UTC, in whole seconds (as encoded, and as the parsed certificate reports)."""
    return when.astimezone(dt.UTC).replace(microsecond=0)


def _time(when: dt.datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), whole seconds."""
    return _whole_time(_whole(when))


@functools.lru_cache(maxsize=64)
def _whole_time(when: dt.datetime) -> bytes:
    """:func:`_time` of a whole second in UTC (the leaves of one second share it)."""
    rest = f"{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}Z"
    if 1950 <= when.year < 2050:
        return _tlv(0x17, f"{when.year % 100:02d}{rest}".encode("ascii"))
    return _tlv(0x18, f"{when.year:04d}{rest}".encode("ascii"))


def _extension(oid_der: bytes, critical: bool, value: bytes) -> bytes:
    return _tlv(0x30, oid_der + (b"\x01\x01\xff" if critical else b"") + _tlv(0x04, value))


def _oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        rest = arc
        chunk = [rest & 0x7F]
        rest >>= 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


_SAN_OID = _oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def _sans(sans: Sequence[x509.GeneralName]) -> bytes:
    """The SubjectAltName value: URIs encoded here ([6] IA5String), anything else by
    ``cryptography`` (the control plane's own DNS names and addresses)."""
    if all(type(san) is x509.UniformResourceIdentifier for san in sans):
        return _tlv(0x30, b"".join(_tlv(0x86, san.value.encode("ascii")) for san in sans))
    return x509.SubjectAlternativeName(list(sans)).public_bytes()


class LeafShape:
    """What every leaf of one issuer (and subject key type) shares, encoded once."""

    def __init__(self, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
                 is_rsa: bool) -> None:  # fmt: skip
        self.issuer_key = issuer_key
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False,
        )  # fmt: skip
        fixed: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (usage, True),
            (x509.ExtendedKeyUsage(_EKU), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False),
        ]
        self.extensions = b"".join(
            _extension(_oid(ext.oid), critical, ext.public_bytes()) for ext, critical in fixed
        )
        self.head = _VERSION  # before the serial
        self.issuer = _ALG + issuer.subject.public_bytes()  # between serial and validity

    def certificate(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        serial: int,
        not_before: dt.datetime,
        not_after: dt.datetime,
        sans: Sequence[x509.GeneralName],
    ) -> bytes:
        """The signed leaf, DER."""
        san = _extension(_SAN_OID, True, _sans(sans))
        return self.signed(public_key, serial, _time(not_before), _time(not_after), san)

    def signed(
        self, public_key: CertificatePublicKeyTypes, serial: int, not_before: bytes,
        not_after: bytes, san: bytes,
    ) -> bytes:  # fmt: skip
        """The signed leaf, DER, from its encoded validity times and SAN extension."""
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tbs = _tlv(
            0x30,
            self.head
            + _integer(serial)
            + self.issuer
            + _tlv(0x30, not_before + not_after)
            + _EMPTY_NAME
            + spki
            + _tlv(0xA3, _tlv(0x30, self.extensions + san)),
        )
        signature = self.issuer_key.sign(tbs, _ECDSA_SHA256)
        return _tlv(0x30, tbs + _ALG + _tlv(0x03, b"\x00" + signature))


class LeafSigner:
    """Signs the leaves of one issuer (an intermediate and its key)."""

    def __init__(self, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> None:
        self.issuer = issuer
        self.issuer_key = issuer_key
        self.not_after = issuer.not_valid_after_utc
        """No leaf outlives its issuer."""
        self._shapes: dict[bool, LeafShape] = {}

    def shape(self, is_rsa: bool) -> LeafShape:
        """The shape of the leaves for an RSA (``is_rsa``) or an EC subject key."""
        shape = self._shapes.get(is_rsa)
        if shape is None:
            shape = self._shapes[is_rsa] = LeafShape(self.issuer, self.issuer_key, is_rsa)
        return shape

    def leaf(
        self,
        public_key: CertificatePublicKeyTypes,
        spiffe_id: str,
        now: dt.datetime,
        ttl: dt.timedelta,
        extra_sans: Sequence[x509.GeneralName] = (),
    ) -> LeafDER:
        """A leaf for ``public_key`` naming ``spiffe_id`` (then ``extra_sans``), valid from
        :data:`SKEW` before ``now`` for ``ttl`` (at most until the issuer expires)."""
        if extra_sans:
            sans = _sans([x509.UniformResourceIdentifier(spiffe_id), *extra_sans])
        else:
            sans = _tlv(0x30, _tlv(0x86, spiffe_id.encode("ascii")))
        serial = x509.random_serial_number()
        not_before = _whole(now - SKEW)
        not_after = _whole(min(now + ttl, self.not_after))
        der = self.shape(isinstance(public_key, rsa.RSAPublicKey)).signed(
            public_key,
            serial,
            _whole_time(not_before),
            _whole_time(not_after),
            _extension(_SAN_OID, True, sans),
        )
        return LeafDER(der, serial, not_before, not_after)
