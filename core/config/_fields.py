"""Typed, located field reading for config documents.

Theory of operation: the YAML loader (``_yaml.py``) returns mappings that
remember the line of every key. A :class:`Loc` says where a value sits (file,
line, resource ``Kind/name``, field path); :class:`Fields` reads one mapping
key by key with a type and range, and :meth:`Fields.done` rejects any key that
was not read, listing the allowed ones, so a typo is an error instead of a
silently ignored setting. Every error is a :class:`ConfigError` rendered as::

    FILE:LINE: Kind/name: spec.field[0].path: expected WHAT, got VALUE
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from plait.sdk import ConfigError

from ._yaml import key_line, node_line

__all__ = ["Fields", "Loc", "parse_duration", "show"]

T = TypeVar("T")


class _Missing:
    """The type of the "no default: the field is required" marker."""


_MISSING = _Missing()

# GEP-2257 Duration: 1 to 4 "<1..5 digits><unit>" groups, units h, m, s, ms.
_DURATION = re.compile(r"^([0-9]{1,5}(h|ms|m|s)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
DURATION_HINT = "a duration like 500ms, 10s, 1m or 1h30m"


def show(value: object) -> str:
    """A short rendering of a YAML value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(text: str) -> float | None:
    """Seconds for a GEP-2257 duration string, or ``None`` if it is not one."""
    if not _DURATION.match(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True, slots=True)
class Loc:
    """Where a value sits: file, line, resource (``Kind/name``) and field path."""

    file: str
    line: int = 0
    resource: str = ""
    path: str = ""

    def key(self, name: str, line: int = 0) -> Loc:
        path = f"{self.path}.{name}" if self.path else name
        return Loc(self.file, line or self.line, self.resource, path)

    def index(self, i: int, line: int = 0) -> Loc:
        return Loc(self.file, line or self.line, self.resource, f"{self.path}[{i}]")

    @property
    def file_line(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def field(self) -> str:
        return ": ".join(p for p in (self.resource, self.path) if p)

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.file_line, field=self.field)

    def expected(self, what: str, got: object) -> ConfigError:
        return self.error(f"expected {what}, got {show(got)}")

    def relocate(self, err: ConfigError) -> ConfigError:
        """``err`` (raised by code that knows only the inner field) placed under this spot."""
        return err.at(file=self.file_line, prefix=self.field)


class Fields:
    """Reads one mapping, key by key, with types and ranges; :meth:`done` rejects the rest."""

    def __init__(self, raw: object, loc: Loc) -> None:
        if not isinstance(raw, Mapping):
            raise loc.expected("a mapping", raw)
        self.raw: Mapping[Any, Any] = raw
        self.loc = loc
        self._allowed: list[str] = []

    # -- locating ---------------------------------------------------------------------------

    def at(self, key: str) -> Loc:
        """The location of ``key`` (its own line when present)."""
        return self.loc.key(key, key_line(self.raw, key))

    def has(self, key: str) -> bool:
        self._allow(key)
        return key in self.raw

    def _allow(self, key: str) -> None:
        if key not in self._allowed:
            self._allowed.append(key)

    def _get(self, key: str, default: object) -> Any:
        self._allow(key)
        if key in self.raw:
            return self.raw[key]
        if default is _MISSING:
            raise self.loc.error(f"missing required field {key!r}{self._typo_hint(key)}")
        return default

    def _typo_hint(self, key: str) -> str:
        others = [k for k in self.raw if isinstance(k, str)]
        close = difflib.get_close_matches(key, others, n=1, cutoff=0.7)
        return f" (is {close[0]!r} a typo?)" if close else ""

    # -- scalars ----------------------------------------------------------------------------

    def text(
        self,
        key: str,
        default: str | _Missing = _MISSING,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "a string",
        choices: tuple[str, ...] = (),
    ) -> str:
        """A non-empty string; ``default`` when absent (required if no default)."""
        value = self._get(key, default)
        if key not in self.raw:
            return str(value)
        if choices:
            what = "one of " + ", ".join(choices)
        if (
            not isinstance(value, str)
            or not value
            or (pattern is not None and not pattern.match(value))
            or (choices and value not in choices)
        ):
            raise self.at(key).expected(what, value)
        return value

    def opt_text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, what: str = "a string"
    ) -> str | None:
        """Like :meth:`text`, ``None`` when absent."""
        return self.text(key, pattern=pattern, what=what) if self.has(key) else None

    def integer(self, key: str, default: int | _Missing = _MISSING, *, lo: int, hi: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.at(key).expected(f"an integer {lo}..{hi}", value)
        return value

    def opt_integer(self, key: str, *, lo: int, hi: int) -> int | None:
        return self.integer(key, lo=lo, hi=hi) if self.has(key) else None

    def duration(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """Seconds (a GEP-2257 string), ``default`` when absent."""
        if not self.has(key):
            return default
        value = self.raw[key]
        seconds = parse_duration(value) if isinstance(value, str) else None
        if seconds is None or (seconds == 0 and not allow_zero):
            hint = DURATION_HINT if allow_zero else DURATION_HINT + ", not 0s"
            raise self.at(key).expected(hint, value)
        return seconds

    def opt_duration(self, key: str) -> float | None:
        """Seconds, or ``None`` when absent or ``0s`` (Gateway API: zero disables)."""
        if not self.has(key):
            return None
        return self.duration(key, 0.0, allow_zero=True) or None

    def convert(self, key: str, parse: Callable[[object, Loc], T], default: T) -> T:
        """``parse(value, loc)`` for a present key, else ``default``."""
        return parse(self.raw[key], self.at(key)) if self.has(key) else default

    def raw_value(self, key: str, default: Any = None) -> Any:
        """The value as loaded, unchecked (a filter's own ``config`` block)."""
        return self._get(key, default)

    # -- collections ------------------------------------------------------------------------

    def sub(self, key: str, *, required: bool = False) -> Fields | None:
        """A nested mapping reader, or ``None`` when absent (``{}`` if ``null``)."""
        value = self._get(key, _MISSING if required else None)
        if key not in self.raw:
            return None
        return Fields({} if value is None else value, self.at(key))

    def items(self, key: str, *, max_items: int = 1 << 16) -> list[tuple[Any, Loc]]:
        """A list's items with their locations (``[]`` when absent or ``null``)."""
        value = self._get(key, None)
        if value is None:
            return []
        loc = self.at(key)
        if not isinstance(value, list):
            raise loc.expected("a list", value)
        if len(value) > max_items:
            raise loc.error(f"expected at most {max_items} items, got {len(value)}")
        return [(item, loc.index(i, node_line(item))) for i, item in enumerate(value)]

    def maps(self, key: str, *, max_items: int = 1 << 16) -> list[Fields]:
        """A list of mappings, each as a reader."""
        return [Fields(item, loc) for item, loc in self.items(key, max_items=max_items)]

    def labels(self, key: str) -> dict[str, str]:
        """A ``string: string`` mapping (``labels:``)."""
        value = self._get(key, None)
        if value is None:
            return {}
        loc = self.at(key)
        if not isinstance(value, Mapping):
            raise loc.expected("a mapping of strings to strings", value)
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise loc.key(str(k), key_line(value, k)).expected("a string", v)
        return dict(value)

    def done(self) -> None:
        """Reject every key that no reader asked for, listing the allowed ones."""
        for key in self.raw:
            if key not in self._allowed:
                allowed = ", ".join(self._allowed) or "none"
                raise self.loc.key(str(key), key_line(self.raw, key)).error(
                    f"unknown field (allowed: {allowed})"
                )
