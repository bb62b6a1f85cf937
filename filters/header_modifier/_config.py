"""Config of the header modifiers: Gateway API ``HTTPHeaderFilter``.

``{set: [{name, value}], add: [{name, value}], remove: [name]}``, at most 16
entries each (the Gateway API CRD limit). Names are case-insensitive (RFC 9110
§5.1) and must be unique within ``set``, within ``add`` and within ``remove``.

Order of application: ``remove``, then ``set`` (replaces every value), then
``add`` (appends one more value), so ``set``/``add`` win over ``remove``.
The filter's work is precomputed here as lower-cased byte pairs: one pass over
the header list to drop, one ``extend`` to append.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._validate import HEADER_NAME, ConfigReader, check_header_value
from plait.sdk import ConfigError

__all__ = ["HeaderModifierConfig", "HeaderValue", "parse_header_modifier"]

MAX_ENTRIES = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderValue:
    name: str
    """Lower-case."""
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderModifierConfig:
    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()
    drop: frozenset[bytes] = field(init=False, repr=False, compare=False)
    """Names whose existing values go: ``remove`` and ``set``."""
    append: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False, compare=False)
    """Pairs appended after the drop: ``set``, then ``add``."""

    def __post_init__(self) -> None:
        drop = {n.encode("latin-1") for n in self.remove}
        drop.update(h.name.encode("latin-1") for h in self.set)
        pairs = tuple(
            (h.name.encode("latin-1"), h.value.encode("latin-1")) for h in (*self.set, *self.add)
        )
        object.__setattr__(self, "drop", frozenset(drop))
        object.__setattr__(self, "append", pairs)


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not HEADER_NAME.match(value):
        raise ConfigError(f"expected a header name (RFC 9110 token), got {value!r}", field=field)
    return value.lower()


def _values(r: ConfigReader, key: str) -> tuple[HeaderValue, ...]:
    out: list[HeaderValue] = []
    for item in r.maps(key, max_items=MAX_ENTRIES):
        name = _name(item.value("name"), item.at("name"))
        value = item.text("value", empty=True)
        check_header_value(value, item.at("value"))
        item.done()
        if any(h.name == name for h in out):
            raise ConfigError(f"duplicate header name {name!r}", field=item.at("name"))
        out.append(HeaderValue(name=name, value=value))
    return tuple(out)


def parse_header_modifier(raw: Mapping[str, Any]) -> HeaderModifierConfig:
    """Parse and validate; raises :class:`ConfigError` naming the field."""
    r = ConfigReader(raw)
    set_ = _values(r, "set")
    add = _values(r, "add")
    remove: list[str] = []
    for item, field_path in r.items("remove", max_items=MAX_ENTRIES):
        name = _name(item, field_path)
        if name in remove:
            raise ConfigError(f"duplicate header name {name!r}", field=field_path)
        remove.append(name)
    r.done()
    return HeaderModifierConfig(set=set_, add=add, remove=tuple(remove))
