"""The CA's files in ``<data-dir>/ca/``: private keys written once, mode 0600, and checked on read.

Theory of operation: a private key is created with ``O_CREAT | O_EXCL`` and mode
``0600`` in one ``os.open`` call (the admin token's pattern, ``controlplane/_token.py``),
so no other user can ever read it and two control planes starting at once cannot both
write one. Public files (certificates) are written the same way with mode ``0644`` to a
temporary name and renamed into place, so a reader sees the old file or the new one,
never half of one. A key file that the group or the world may access is refused with a
message that names the file and the command that fixes it: whoever reads the CA key can
mint any identity in the mesh.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["CAFileError", "read_private", "write_private", "write_public"]


class CAFileError(Exception):
    """A CA file is unsafe, unreadable or invalid; the message names it and the fix."""


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``data``; :class:`FileExistsError` if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_public(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0644) atomically: a temporary file renamed into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def check_private_mode(path: Path) -> None:
    """Refuse a key file the group or others may access."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CAFileError(f"{path}: cannot read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CAFileError(
            f"{path}: the CA private key is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); anyone who reads it can mint any identity in the "
            f"mesh. Fix with: chmod 600 {path}"
        )


def read_private(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path`` (mode checked first)."""
    check_private_mode(path)
    try:
        data = path.read_bytes()
        return serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise CAFileError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise CAFileError(
            f"{path}: not an unencrypted PEM private key ({exc}); expected "
            "'-----BEGIN PRIVATE KEY-----' (PKCS#8) or an EC/RSA key without a password"
        ) from None


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CAFileError(f"{path}: cannot read the {what}: {exc.strerror}") from None
