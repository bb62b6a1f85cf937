"""weighted-split config."""

from __future__ import annotations

from typing import Any

import pytest

from plait.filters.traffic_split import SplitBackend, parse_weighted_split
from plait.sdk import ConfigError


def test_parse_and_precompute() -> None:
    cfg = parse_weighted_split(
        {
            "backends": [
                {"cluster": "a", "weight": 90},
                {"cluster": "b", "weight": 0},
                {"cluster": "c", "weight": 10},
            ]
        }
    )
    assert cfg.backends[1] == SplitBackend(cluster="b", weight=0)
    assert cfg.clusters == ("a", "c") and cfg.cumulative == (90, 100) and cfg.total == 100
    assert cfg.single is None


def test_default_weight_and_single() -> None:
    cfg = parse_weighted_split({"backends": [{"cluster": "echo.default:8080"}]})
    assert cfg.backends == (SplitBackend(cluster="echo.default:8080", weight=1),)
    assert cfg.single == "echo.default:8080" and cfg.pick(0.99) == "echo.default:8080"


@pytest.mark.parametrize(
    ("draw", "cluster"),
    [(0.0, "a"), (0.8999, "a"), (0.9, "c"), (0.99999, "c"), (1.0, "c")],
)
def test_pick_by_cumulative_weight(draw: float, cluster: str) -> None:
    cfg = parse_weighted_split(
        {
            "backends": [
                {"cluster": "a", "weight": 9},
                {"cluster": "b", "weight": 0},
                {"cluster": "c", "weight": 1},
            ]
        }
    )
    assert cfg.pick(draw) == cluster


def test_all_zero_picks_nothing() -> None:
    cfg = parse_weighted_split({"backends": [{"cluster": "a", "weight": 0}]})
    assert cfg.pick(0.5) is None and cfg.single is None


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({}, "backends", "at least one backend"),
        ({"backends": [{"weight": 1}]}, "backends[0]", "missing required field 'cluster'"),
        ({"backends": [{"cluster": "a b"}]}, "backends[0].cluster", "cluster name"),
        (
            {"backends": [{"cluster": "a", "weight": -3}]},
            "backends[0].weight",
            "0..1000000, got -3",
        ),
        ({"backends": [{"cluster": "a", "weight": 1000001}]}, "backends[0].weight", "0..1000000"),
        ({"backends": [{"cluster": "a", "weight": 1.5}]}, "backends[0].weight", "0..1000000"),
        (
            {"backends": [{"cluster": "a", "wieght": 1}]},
            "backends[0].wieght",
            "allowed: cluster, weight",
        ),
        ({"backend": []}, "backend", "unknown field"),
    ],
)
def test_errors_name_the_field(raw: dict[str, Any], field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_weighted_split(raw)
    assert info.value.field == field
    assert expected in info.value.message
