"""path-deny config."""

from __future__ import annotations

from typing import Any

import pytest

from plait.filters.path_deny import REASON, PathRule, parse_path_deny
from plait.sdk import ConfigError


def test_defaults_and_prebuilt_reply() -> None:
    cfg = parse_path_deny({"paths": [{"value": "/admin"}]})
    assert cfg.paths == (PathRule(type="PathPrefix", value="/admin"),)
    assert cfg.status == 403
    assert cfg.reply.status == 403 and cfg.reply.reason == REASON == "denied by path policy"
    assert cfg.reply.body == b"denied by path policy\n"
    assert ("content-type", "text/plain; charset=utf-8") in cfg.reply.headers


def test_custom_status_and_empty_body() -> None:
    cfg = parse_path_deny({"paths": [{"type": "Exact", "value": "/x"}], "status": 404, "body": ""})
    assert cfg.reply.status == 404 and cfg.reply.body == b"" and cfg.reply.headers == ()


@pytest.mark.parametrize(
    ("path", "denied"),
    [
        ("/admin", True),
        ("/admin/", True),
        ("/admin/users", True),
        ("/administrator", False),
        ("/exact", True),
        ("/exact/", False),
        ("/v1/secret", True),
        ("/v1/secrets", False),
        ("/", False),
    ],
)
def test_denies(path: str, denied: bool) -> None:
    cfg = parse_path_deny(
        {
            "paths": [
                {"type": "PathPrefix", "value": "/admin/"},
                {"type": "Exact", "value": "/exact"},
                {"type": "RegularExpression", "value": "/v[0-9]+/secret"},
            ]
        }
    )
    assert cfg.denies(path) is denied


def test_prefix_slash_denies_everything() -> None:
    cfg = parse_path_deny({"paths": [{"value": "/"}]})
    assert cfg.denies("/") and cfg.denies("/anything/at/all")


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({}, "paths", "at least one path"),
        ({"paths": []}, "paths", "at least one path"),
        (
            {"paths": [{"type": "Prefix", "value": "/"}]},
            "paths[0].type",
            "one of Exact, PathPrefix",
        ),
        ({"paths": [{"value": "admin"}]}, "paths[0].value", "starting with /"),
        (
            {"paths": [{"type": "RegularExpression", "value": "("}]},
            "paths[0].value",
            "regular expression",
        ),
        ({"paths": [{"value": "/"}], "status": 200}, "status", "integer 400..599, got 200"),
        ({"paths": [{"value": "/"}], "status": True}, "status", "integer 400..599"),
        ({"paths": [{"value": "/"}], "body": 3}, "body", "expected a string"),
        ({"paths": [{"value": "/"}], "reason": "x"}, "reason", "allowed: paths, status, body"),
        ({"paths": "/admin"}, "paths", "expected a list"),
        ({"paths": ["/admin"]}, "paths[0]", "expected a mapping"),
    ],
)
def test_errors_name_the_field(raw: dict[str, Any], field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_path_deny(raw)
    assert info.value.field == field
    assert expected in info.value.message
