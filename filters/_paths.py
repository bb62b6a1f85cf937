"""Request path normalization shared by the filters that match paths for security.

RFC 3986 §6.2.2: percent-encoded unreserved characters decoded, dot segments removed,
and repeated slashes merged, as Envoy's ``normalize_path``/``merge_slashes`` do, so
``//admin``, ``/x/../admin`` and ``/%61dmin`` cannot slip past a rule for ``/admin``.
Encoded slashes (``%2F``) stay encoded.
"""

from __future__ import annotations

import re

__all__ = ["normalize_path", "normalized"]

_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _decode_unreserved(m: re.Match[str]) -> str:
    char = chr(int(m.group(1), 16))
    return char if char in _UNRESERVED else "%" + m.group(1).upper()


def normalize_path(path: str) -> str:
    """``path`` with unreserved escapes decoded, dot segments removed, slashes merged."""
    if "%" in path:
        path = _PCT.sub(_decode_unreserved, path)
    if "//" not in path and "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for seg in segments[1:]:  # segments[0] is "" for an absolute path
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    trailing = segments[-1] in ("", ".", "..") and len(segments) > 1 and bool(out)
    return "/" + "/".join(out) + ("/" if trailing else "")


def normalized(path: str) -> str:
    """``path`` normalized, skipping the work when nothing needs it."""
    if "%" in path or "//" in path or "/." in path:
        return normalize_path(path)
    return path
