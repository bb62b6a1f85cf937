"""The CA's key material on disk: generations of root + intermediate, and which are in use.

Theory of operation: each root the CA has had lives in its own directory
``<data-dir>/ca/gen-<n>/`` (``root.pem``, ``root.key``, ``intermediate.pem``,
``intermediate.key``; keys mode 0600, ``root.key`` absent when the operator kept the root
key elsewhere). ``<data-dir>/ca/state.json`` names the current generation and, during a
root rotation, the previous one and the cross-signed certificate (the new root's key and
subject, issued by the old root). A rotation writes the new generation completely and
only then replaces ``state.json`` (atomically), so a crash leaves the old state intact.
At the first start ``state.json`` is linked into place only if there is none, so of two
control planes starting at once on one directory, both end up with the same CA.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._files import CAFileError, read_bytes, read_private, write_private, write_public
from ._x509 import fingerprint, pem

__all__ = ["Generation", "State", "load_state", "save_state", "write_generation"]

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Generation:
    name: str
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey | None
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    @functools.cached_property
    def fingerprint(self) -> str:
        """The root's SHA-256 fingerprint (computed once: every issuance records it)."""
        return fingerprint(self.root)


@dataclass(frozen=True)
class State:
    current: Generation
    previous: Generation | None = None
    cross: x509.Certificate | None = None
    """The current root cross-signed by the previous one (during a rotation)."""


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_generation(
    directory: Path,
    index: int,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey | None,
    intermediate: x509.Certificate,
    intermediate_key: ec.EllipticCurvePrivateKey,
) -> Generation:
    name = f"gen-{index}-{secrets.token_hex(3)}"
    gen_dir = directory / name
    gen_dir.mkdir(mode=0o700, parents=True)
    if root_key is not None:
        write_private(gen_dir / "root.key", _key_pem(root_key))
    write_private(gen_dir / "intermediate.key", _key_pem(intermediate_key))
    write_public(gen_dir / "root.pem", pem(root))
    write_public(gen_dir / "intermediate.pem", pem(intermediate))
    return Generation(name, root, root_key, intermediate, intermediate_key)


def _cert(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_bytes(path, what))
    except ValueError as exc:
        raise CAFileError(f"{path}: not a PEM certificate ({exc})") from None


def ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = read_private(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAFileError(f"{path}: the CA key must be an EC key (P-256 or P-384)")
    return key


def _load_generation(directory: Path, name: str) -> Generation:
    gen_dir = directory / name
    root_key_file = gen_dir / "root.key"
    return Generation(
        name=name,
        root=_cert(gen_dir / "root.pem", "root certificate"),
        root_key=ec_key(root_key_file) if root_key_file.exists() else None,
        intermediate=_cert(gen_dir / "intermediate.pem", "intermediate certificate"),
        intermediate_key=ec_key(gen_dir / "intermediate.key"),
    )


def load_state(directory: Path) -> State | None:
    """The saved state, or ``None`` if this data directory has no CA yet."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(read_bytes(path, "CA state"))
        current = _load_generation(directory, str(doc["current"]))
        previous = (
            _load_generation(directory, str(doc["previous"])) if doc.get("previous") else None
        )
        cross = (
            _cert(directory / str(doc["cross"]), "cross-signed root") if doc.get("cross") else None
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CAFileError(f"{path}: unreadable CA state ({exc})") from None
    return State(current, previous, cross)


def save_state(directory: Path, state: State, *, first: bool = False) -> None:
    """Write ``state.json``; with ``first``, :class:`FileExistsError` if another process
    wrote one meanwhile (two control planes starting at once: one CA wins)."""
    doc: dict[str, str | None] = {"current": state.current.name, "previous": None, "cross": None}
    if state.previous is not None and state.cross is not None:
        cross_file = f"{state.current.name}/cross.pem"
        write_public(directory / cross_file, pem(state.cross))
        doc.update(previous=state.previous.name, cross=cross_file)
    data = (json.dumps(doc, indent=2) + "\n").encode()
    if not first:
        write_public(directory / STATE_FILE, data)
        return
    tmp = directory / f"{state.current.name}/state.json"
    write_public(tmp, data)
    try:
        os.link(tmp, directory / STATE_FILE)  # fails if it exists: no moment of a half file
    finally:
        tmp.unlink()
