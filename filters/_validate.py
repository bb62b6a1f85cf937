"""A small reader for built-in filter configs: typed keys, unknown keys rejected.

Errors are :class:`~plait.sdk.ConfigError` with ``field`` relative to the
filter's config block (``set[1].name``); the loader prefixes the file,
resource and the path of the block itself.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from plait.sdk import ConfigError

__all__ = ["HEADER_NAME", "ConfigReader", "check_header_value"]

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.1 token
_BAD_VALUE = re.compile(r"[\x00\r\n]")  # RFC 9110 §5.5: never CR, LF or NUL


class _Missing:
    pass


_MISSING = _Missing()


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else repr(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_header_value(value: str, field: str) -> bytes:
    """``value`` as latin-1 bytes; rejects CR, LF, NUL and non-latin-1 text."""
    if _BAD_VALUE.search(value):
        raise ConfigError(
            f"expected a header value without CR, LF or NUL, got {value!r}", field=field
        )
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(f"expected latin-1 text, got {value!r}", field=field) from None


class ConfigReader:
    """Reads one config mapping; :meth:`done` rejects keys nobody asked for."""

    def __init__(self, raw: object, field: str = "") -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"expected a mapping, got {_show(raw)}", field=field)
        self.raw: Mapping[Any, Any] = raw
        self.field = field
        self._allowed: list[str] = []

    def at(self, key: str) -> str:
        return _join(self.field, key)

    def value(self, key: str, default: object = _MISSING) -> object:
        """The raw value of ``key`` (required unless ``default`` is given)."""
        self._allowed.append(key)
        if key in self.raw:
            return self.raw[key]
        if isinstance(default, _Missing):
            close = difflib.get_close_matches(key, [str(k) for k in self.raw], n=1, cutoff=0.7)
            hint = f" (is {close[0]!r} a typo?)" if close else ""
            raise ConfigError(f"missing required field {key!r}{hint}", field=self.field)
        return default

    def text(self, key: str, default: str | _Missing = _MISSING, *, empty: bool = False) -> str:
        value = self.value(key, default)
        if not isinstance(value, str) or (not value and not empty):
            what = "a string" if empty else "a non-empty string"
            raise ConfigError(f"expected {what}, got {_show(value)}", field=self.at(key))
        return value

    def integer(self, key: str, default: int | _Missing = _MISSING, *, lo: int, hi: int) -> int:
        value = self.value(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(
                f"expected an integer {lo}..{hi}, got {_show(value)}", field=self.at(key)
            )
        return value

    def items(self, key: str, *, max_items: int = 1 << 16) -> list[tuple[object, str]]:
        """A list's items with their field paths (``[]`` when absent or null)."""
        value = self.value(key, None)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {_show(value)}", field=self.at(key))
        if len(value) > max_items:
            raise ConfigError(
                f"expected at most {max_items} items, got {len(value)}", field=self.at(key)
            )
        return [(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]

    def maps(self, key: str, *, max_items: int = 1 << 16) -> list[ConfigReader]:
        return [ConfigReader(item, field) for item, field in self.items(key, max_items=max_items)]

    def done(self) -> None:
        for key in self.raw:
            if key not in self._allowed:
                allowed = ", ".join(self._allowed) or "none"
                raise ConfigError(f"unknown field (allowed: {allowed})", field=self.at(str(key)))
