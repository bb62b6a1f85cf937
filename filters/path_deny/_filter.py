"""``path-deny``: answer a local reply for denied paths.

The path is normalized before matching (RFC 3986 §6.2.2: percent-encoded
unreserved characters decoded, dot segments removed, and repeated slashes
merged, as Envoy's ``normalize_path``/``merge_slashes`` do), so ``//admin``,
``/x/../admin`` and ``/%61dmin`` cannot slip past a rule for ``/admin``.
Encoded slashes (``%2F``) stay encoded. The upstream still receives the
original path. The check is cheap when nothing needs normalizing.
"""

from __future__ import annotations

from plait.filters._paths import normalize_path
from plait.sdk import FilterResult, Headers, PassThroughFilter, StreamContext

from ._config import PathDenyConfig

__all__ = ["PathDeny", "normalize_path"]


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
