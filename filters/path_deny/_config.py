"""Config of ``path-deny``: ``{paths: [{type, value}], status: 403, body: "..."}``.

Path match types and semantics are the Gateway API's (``HTTPPathMatch``):

* ``Exact``: the whole path (no query) equals ``value``;
* ``PathPrefix`` (the default): element-wise prefix, so ``/admin`` denies
  ``/admin`` and ``/admin/x`` but not ``/administrator``; a trailing ``/`` in
  ``value`` is ignored;
* ``RegularExpression``: Python ``re``, matched against the whole path.

The reply is built once here and shared by every stream (``LocalReply`` is frozen).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError, LocalReply

__all__ = ["REASON", "PathDenyConfig", "PathRule", "parse_path_deny"]

REASON = "denied by path policy"
_TYPES = ("Exact", "PathPrefix", "RegularExpression")


@dataclass(frozen=True, slots=True, kw_only=True)
class PathRule:
    type: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PathDenyConfig:
    paths: tuple[PathRule, ...]
    status: int = 403
    body: str = "denied by path policy\n"
    exact: frozenset[str] = field(init=False, repr=False, compare=False)
    prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Each prefix with one trailing ``/`` (``"/"`` for ``PathPrefix /``)."""
    regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    reply: LocalReply = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefixes = [p.value.rstrip("/") + "/" for p in self.paths if p.type == "PathPrefix"]
        regexes = [re.compile(p.value) for p in self.paths if p.type == "RegularExpression"]
        body = self.body.encode()
        headers = (("content-type", "text/plain; charset=utf-8"),) if body else ()
        object.__setattr__(
            self, "exact", frozenset(p.value for p in self.paths if p.type == "Exact")
        )
        object.__setattr__(self, "prefixes", tuple(prefixes))
        object.__setattr__(self, "regexes", tuple(regexes))
        object.__setattr__(self, "reply", LocalReply(self.status, body, headers, reason=REASON))

    def denies(self, path: str) -> bool:
        """Whether ``path`` (already normalized, no query) is denied."""
        if path in self.exact:
            return True
        for prefix in self.prefixes:
            # "/a/" matches "/a/..." and, without its slash, "/a" itself.
            if path.startswith(prefix) or path == prefix[:-1]:
                return True
        return any(r.fullmatch(path) for r in self.regexes)


def _rule(r: ConfigReader) -> PathRule:
    ptype = r.text("type", "PathPrefix")
    if ptype not in _TYPES:
        raise ConfigError(f"expected one of {', '.join(_TYPES)}, got {ptype!r}", field=r.at("type"))
    value = r.text("value")
    if ptype == "RegularExpression":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(
                f"expected a regular expression ({exc}), got {value!r}", field=r.at("value")
            ) from None
    elif not value.startswith("/"):
        raise ConfigError(f"expected a path starting with /, got {value!r}", field=r.at("value"))
    r.done()
    return PathRule(type=ptype, value=value)


def parse_path_deny(raw: Mapping[str, Any]) -> PathDenyConfig:
    """Parse and validate; raises :class:`ConfigError` naming the field."""
    r = ConfigReader(raw)
    paths = tuple(_rule(p) for p in r.maps("paths", max_items=256))
    status = r.integer("status", 403, lo=400, hi=599)
    body = r.text("body", "denied by path policy\n", empty=True)
    r.done()
    if not paths:
        raise ConfigError("expected at least one path", field="paths")
    config = PathDenyConfig(paths=paths, status=status, body=body)
    return config
