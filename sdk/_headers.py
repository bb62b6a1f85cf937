"""An HTTP header list shared by HTTP/1.1 and HTTP/2.

Theory of operation: headers are kept as a list of ``(name, value)`` byte pairs
with lower-cased names, in arrival order (HTTP/2 requires lower-case names and
HTTP/1.1 names are case-insensitive, RFC 9110 §5.1). Duplicates are kept, so a
header list round-trips through the proxy unchanged. The API accepts ``str`` or
``bytes`` and returns ``str`` (latin-1, RFC 9110 §5.5) from :meth:`get`, or the
raw bytes from :meth:`get_raw`; storage stays bytes because that is what the
codecs read and write, so the hot path never decodes a header nobody asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["HeaderPairs", "Headers"]

HeaderPairs = list[tuple[bytes, bytes]]
"""A header section as ``(lower-case name, value)`` byte pairs, in order: what
:attr:`Headers.raw` exposes and codecs parse into and serialize from."""


def _b(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


_NAMES: Final[dict[bytes, bytes]] = {}
_STR_NAMES: Final[dict[str, bytes]] = {}
"""Header names as callers give them (bytes or str, any case) → the lower-case bytes name:
a lookup costs less than ``encode`` and ``lower`` (method calls) for the few names a
program uses (two tables: a str and a bytes name of the same letters hash alike, and are
never compared). Bounded: past :data:`_NAMES_MAX` names, or longer than 64 characters, a
name is converted and not kept."""
_NAMES_MAX: Final = 512


def _name(name: str | bytes) -> bytes:
    """``name`` as the lower-case bytes the header list holds."""
    if isinstance(name, str):
        key = _STR_NAMES.get(name)
        if key is None:
            key = name.encode("latin-1").lower()
            if len(_STR_NAMES) < _NAMES_MAX and len(name) <= 64:
                _STR_NAMES[name] = key
        return key
    key = _NAMES.get(name)
    if key is None:
        key = name.lower()
        if len(_NAMES) < _NAMES_MAX and len(name) <= 64:
            _NAMES[name] = key
    return key


class Headers:
    """A mutable, ordered, case-insensitive multi-map of HTTP header fields."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        self._items: HeaderPairs = [(_name(n), _b(v)) for n, v in items]

    @classmethod
    def from_lowercase_pairs(cls, pairs: HeaderPairs) -> Headers:
        """Adopt ``pairs`` (names already lower-case) without copying; codecs use this."""
        h = cls()
        h._items = pairs
        return h

    @property
    def raw(self) -> HeaderPairs:
        """The underlying list of ``(lower-case name, value)`` pairs; codecs serialize it."""
        return self._items

    def get(self, name: str | bytes, default: str | None = None) -> str | None:
        """The first value of ``name`` as ``str``, or ``default``."""
        raw = self.get_raw(name)
        return default if raw is None else raw.decode("latin-1")

    def get_raw(self, name: str | bytes) -> bytes | None:
        key = _name(name)
        for n, v in self._items:
            if n == key:
                return v
        return None

    def get_all(self, name: str | bytes) -> list[str]:
        key = _name(name)
        return [v.decode("latin-1") for n, v in self._items if n == key]

    def set(self, name: str | bytes, value: str | bytes) -> None:
        """Replace every value of ``name`` with one value, kept at the first position."""
        key, val = _name(name), _b(value)
        out: HeaderPairs = []
        placed = False
        for n, v in self._items:
            if n == key:
                if not placed:
                    out.append((key, val))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((key, val))
        self._items[:] = out

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append one more value of ``name``."""
        self._items.append((_name(name), _b(value)))

    def remove(self, name: str | bytes) -> None:
        key = _name(name)
        self._items[:] = [(n, v) for n, v in self._items if n != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        return self.get_raw(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for n, v in self._items:
            yield n.decode("latin-1"), v.decode("latin-1")

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Headers:
        return Headers.from_lowercase_pairs(list(self._items))

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"
