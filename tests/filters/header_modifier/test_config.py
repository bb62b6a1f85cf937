"""header-modifier config: Gateway API HTTPHeaderFilter shape and validation."""

from __future__ import annotations

from typing import Any

import pytest

from plait.filters.header_modifier import HeaderModifierConfig, HeaderValue, parse_header_modifier
from plait.sdk import ConfigError


def test_parses_and_precomputes_lowercase_bytes() -> None:
    cfg = parse_header_modifier(
        {
            "set": [{"name": "X-Route", "value": "canary"}],
            "add": [{"name": "x-served-by", "value": ""}],
            "remove": ["Server", "x-debug"],
        }
    )
    assert cfg.set == (HeaderValue(name="x-route", value="canary"),)
    assert cfg.add == (HeaderValue(name="x-served-by", value=""),)
    assert cfg.remove == ("server", "x-debug")
    assert cfg.drop == {b"server", b"x-debug", b"x-route"}
    assert cfg.append == ((b"x-route", b"canary"), (b"x-served-by", b""))


def test_empty_config_is_a_no_op() -> None:
    cfg = parse_header_modifier({})
    assert cfg == HeaderModifierConfig() and not cfg.drop and not cfg.append


def test_config_is_frozen_and_comparable() -> None:
    a = parse_header_modifier({"remove": ["a"]})
    assert a == parse_header_modifier({"remove": ["A"]})
    with pytest.raises(AttributeError):
        a.remove = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"sett": []}, "sett", "unknown field (allowed: set, add, remove)"),
        ({"set": {"name": "a"}}, "set", "expected a list"),
        ({"set": [{"value": "v"}]}, "set[0]", "missing required field 'name'"),
        ({"set": [{"name": "bad name", "value": "v"}]}, "set[0].name", "header name"),
        ({"set": [{"name": "a", "value": 1}]}, "set[0].value", "expected a string, got 1"),
        ({"add": [{"name": "a", "value": "x\r\ny: z"}]}, "add[0].value", "without CR, LF"),
        ({"add": [{"name": "a", "value": "\u2603"}]}, "add[0].value", "latin-1"),
        ({"add": [{"name": "a", "value": "1", "extra": 1}]}, "add[0].extra", "unknown field"),
        (
            {"set": [{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]},
            "set[1].name",
            "duplicate",
        ),
        ({"remove": ["a", "A"]}, "remove[1]", "duplicate header name 'a'"),
        ({"remove": [1]}, "remove[0]", "header name"),
        ({"remove": [f"h{i}" for i in range(17)]}, "remove", "at most 16"),
    ],
)
def test_errors_name_the_field(raw: dict[str, Any], field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_header_modifier(raw)
    assert info.value.field == field
    assert expected in info.value.message
