"""The control plane's data directory and its admin token.

Theory of operation: the resource API accepts a request only with
``Authorization: Bearer <token>``. The token is made once, at the first start,
with :func:`secrets.token_urlsafe` and written to ``<data-dir>/admin-token``;
the file is created with ``O_CREAT | O_EXCL`` and mode ``0600`` in a single
``os.open`` call, so there is no moment at which another user could read it,
and two control planes starting at once cannot both write one (the loser reads
the winner's). Later starts reuse the file. A token file that the group or the
world may read is refused with a message saying how to fix it, because anyone
who can read it can change the mesh.

The data directory is ``--data-dir``, else ``$PLAIT_DATA_DIR``, else
``~/.plait``; it is created with mode ``0700``. The CLI reads the same file
(:func:`read_token`) when it runs on the control plane's host, so a local
``plait apply`` needs no flags.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["BUNDLE_FILE", "TOKEN_FILE", "TokenError", "data_dir", "ensure_token", "read_token"]

BUNDLE_FILE = "ca-bundle.pem"
"""The CA's roots, written by the control plane: what verifies its API and xDS ports."""
TOKEN_FILE = "admin-token"


class TokenError(Exception):
    """The token file is unsafe or unreadable; the message says what to do."""


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit``, else ``$PLAIT_DATA_DIR``, else ``~/.plait``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("PLAIT_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".plait"


def ensure_token(directory: Path) -> str:
    """The admin token of ``directory``, made (mode 0600) if there is none yet.

    The directory is created with mode 0700 if missing.

    Raises:
        TokenError: the file is readable by group or others, empty, or unreadable.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_checked(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token


def read_token(directory: Path) -> str | None:
    """The token kept in ``directory`` (for the CLI), or ``None`` if there is no file."""
    path = directory / TOKEN_FILE
    if not path.exists():
        return None
    return _read_checked(path)


def _read_checked(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenError(
                f"{path}: the admin token file is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); anyone who reads it can change the mesh. "
                f"Fix with: chmod 600 {path}"
            )
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"{path}: cannot read the admin token: {exc}") from None
    if not token:
        raise TokenError(f"{path}: the admin token file is empty (delete it to make a new one)")
    return token
