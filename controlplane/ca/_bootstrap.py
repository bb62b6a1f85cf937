"""The CA's first start: a new root and intermediate, or the operator's, imported.

Theory of operation: :func:`first_generation` writes generation 1 of ``<data-dir>/ca``
(``_state.py``) from either freshly made keys (:func:`new_root_and_intermediate`, also
used by a root rotation) or the operator's files (:class:`Provided`), which are checked
before anything is written: keys must be unencrypted EC keys of mode 0600 matching their
certificates, and an intermediate must be a CA certificate signed by the root. Without
an intermediate the root's key is needed to make one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from ._files import CAFileError
from ._state import Generation, ec_key, write_generation
from ._x509 import ca_cert

__all__ = [
    "INTERMEDIATE_LIFETIME",
    "ROOT_LIFETIME",
    "ROOT_PATH_LENGTH",
    "Provided",
    "first_generation",
    "new_root_and_intermediate",
]

ROOT_LIFETIME = dt.timedelta(days=3650)
INTERMEDIATE_LIFETIME = dt.timedelta(days=365)
ROOT_PATH_LENGTH = 2
"""Two CA certificates may follow a root: during a rotation the path of a new leaf, for a
peer that trusts only the old root, is ``old root -> cross-signed new root -> new
intermediate -> leaf``. With 1, that path is invalid and old peers refuse new leaves."""

Key = ec.EllipticCurvePrivateKey
Material = tuple[x509.Certificate, Key | None, x509.Certificate, Key]


@dataclass(frozen=True)
class Provided:
    """Operator-provided CA files (imported into the data directory at the first start)."""

    root_cert: Path
    root_key: Path | None = None
    intermediate_cert: Path | None = None
    intermediate_key: Path | None = None


def _intermediate(
    root: x509.Certificate, root_key: Key, trust_domain: str, now: dt.datetime, suffix: str
) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_cert(key=key, common_name=f"plait intermediate{suffix}", now=now, path_length=0,
                   trust_domain=trust_domain, lifetime=INTERMEDIATE_LIFETIME,
                   issuer=(root, root_key))  # fmt: skip
    return cert, key


def new_root_and_intermediate(
    trust_domain: str, now: dt.datetime, suffix: str = ""
) -> tuple[x509.Certificate, Key, x509.Certificate, Key]:
    """A new root (P-256, 10 years, pathlen 2) and an intermediate it signed (pathlen 0)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = ca_cert(key=root_key, common_name=f"plait root{suffix}", trust_domain=trust_domain,
                   now=now, lifetime=ROOT_LIFETIME, path_length=ROOT_PATH_LENGTH)  # fmt: skip
    inter, inter_key = _intermediate(root, root_key, trust_domain, now, suffix)
    return root, root_key, inter, inter_key


def first_generation(
    directory: Path, trust_domain: str, provided: Provided | None, now: dt.datetime
) -> Generation:
    material = (
        new_root_and_intermediate(trust_domain, now)
        if provided is None
        else _provided(provided, trust_domain, now)
    )
    return write_generation(directory, 1, *material)


def _cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CAFileError(f"{path}: cannot read a PEM certificate ({exc})") from None


def _provided(p: Provided, trust_domain: str, now: dt.datetime) -> Material:
    root = _cert(p.root_cert)
    root_key = ec_key(p.root_key) if p.root_key else None
    if root_key is not None and root_key.public_key() != root.public_key():
        raise CAFileError(f"{p.root_key}: this key does not belong to {p.root_cert}")
    if p.intermediate_cert is None or p.intermediate_key is None:
        if root_key is None:
            raise CAFileError(
                f"{p.root_cert}: give the root's key (--ca-root-key) or an intermediate "
                "certificate and key (--ca-intermediate-cert, --ca-intermediate-key)"
            )
        return root, root_key, *_intermediate(root, root_key, trust_domain, now, "")
    inter = _cert(p.intermediate_cert)
    inter_key = ec_key(p.intermediate_key)
    if inter_key.public_key() != inter.public_key():
        raise CAFileError(
            f"{p.intermediate_key}: this key does not belong to {p.intermediate_cert}"
        )
    try:
        inter.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CAFileError(f"{p.intermediate_cert}: not issued by {p.root_cert} ({exc})") from None
    constraints = inter.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise CAFileError(f"{p.intermediate_cert}: not a CA certificate (basicConstraints)")
    return root, root_key, inter, inter_key
