"""``path-deny``: answer a local reply for denied paths.

The path is normalized before matching (RFC 3986 §6.2.2: percent-encoded
unreserved characters decoded, dot segments removed, and repeated slashes
merged, as Envoy's ``normalize_path``/``merge_slashes`` do), so ``//admin``,
``/x/../admin`` and ``/%61dmin`` cannot slip past a rule for ``/admin``.
Encoded slashes (``%2F``) stay encoded. The upstream still receives the
original path. The check is cheap when nothing needs normalizing.
"""

from __future__ import annotations

import re

from plait.sdk import FilterResult, Headers, PassThroughFilter, StreamContext

from ._config import PathDenyConfig

__all__ = ["PathDeny", "normalize_path"]

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


class PathDeny(PassThroughFilter):
    """Stateless: one instance may serve every stream."""

    __slots__ = ("_config",)

    def __init__(self, config: PathDenyConfig) -> None:
        self._config = config

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        path = ctx.request.path_only
        if "%" in path or "//" in path or "/." in path:
            path = normalize_path(path)
        if self._config.denies(path):
            return self._config.reply
        return None
