"""``retry`` config: defaults and errors naming the field."""

from __future__ import annotations

import pytest

from plait.filters.retry import parse_retry
from plait.sdk import ConfigError


def test_defaults() -> None:
    c = parse_retry({})
    assert (c.attempts, c.backoff, c.max_backoff, c.max_replay_bytes) == (2, 0.025, 0.25, 65536)
    assert c.on("connect-failure") and c.on("timeout") and not c.statuses
    assert c.grpc_statuses == {"1", "14"}  # cancelled, unavailable


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"attempts": -1}, "attempts", "0..100"),
        ({"retryOn": ["sometimes"]}, "retryOn[0]", "retry condition"),
        ({"backoff": 0.5, "maxBackoff": 0.1}, "maxBackoff", "at least backoff"),
        ({"codes": [302]}, "codes[0]", "400..599"),
        ({"budgets": {"c": {"percent": 150}}}, "budgets.c.percent", "0..100"),
        ({"atempts": 1}, "atempts", "unknown field"),
    ],
)
def test_errors_name_the_field(raw: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_retry(raw)
    assert err.value.field == field and message in err.value.message
