"""What the CA hands out: a signed leaf as its DER, with its chain and its ledger row.

Theory of operation: the CA signs a leaf's DER (``_leafder.py``) and keeps it as it was
signed (:class:`LeafDER`, with the serial and validity it chose), so nothing is parsed
back or re-encoded per certificate: the PEM is written from the DER
(:func:`pem_of_der`, byte for byte what ``cryptography`` writes) and the ledger's
fingerprint is the SHA-256 of those bytes. :class:`Issued` adds the chain, the bundle
and the identity; :meth:`Issued.entry` is the row the ledger records before the answer
leaves (``_ledger.py``), and :attr:`Issued.leaf` parses the certificate for callers
that need the object (the control plane's own serving certificate).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509

from ._ledger import Entry

__all__ = ["Issued", "LeafDER", "pem_of_der"]


def pem_of_der(der: bytes) -> bytes:
    """A certificate's PEM from its DER, as ``cert.public_bytes(PEM)`` writes it."""
    text = base64.b64encode(der)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True, slots=True)
class LeafDER:
    """A signed leaf: its DER and the fields the CA chose (validity in whole seconds)."""

    der: bytes
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class Issued:
    """A signed leaf with its chain; :meth:`entry` is what the ledger records of it."""

    signed: LeafDER
    chain_pem: bytes
    bundle_pem: bytes
    spiffe_id: str
    root: str
    """The fingerprint of the root the leaf chains to."""
    issued_at: float
    renewal: bool

    @functools.cached_property
    def leaf(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.signed.der)

    def entry(self, token: tuple[str, float] | None = None) -> Entry:
        """The ledger's row of this leaf, spending ``token`` (``(id, expires)``) with it."""
        signed = self.signed
        row = (format(signed.serial, "x"), self.spiffe_id, signed.not_after.timestamp(),
               self.root, self.issued_at, hashlib.sha256(signed.der).hexdigest())  # fmt: skip
        return Entry(token, row)
