"""weighted-split filter, driven through plait.sdk.testing."""

from __future__ import annotations

import random
from collections import Counter

import anyio
import pytest

from plait.filters.traffic_split import WEIGHTED_SPLIT, WeightedSplit, parse_weighted_split
from plait.filters.traffic_split import _filter as split_module
from plait.sdk.testing import check_filter, drive, make_context, make_request

RAW = {"backends": [{"cluster": "v1", "weight": 90}, {"cluster": "v2", "weight": 10}]}


def _chosen(f: WeightedSplit, cluster: str | None = None) -> str | None:
    ctx = make_context(make_request(), cluster=cluster)
    anyio.run(lambda: drive(f, ctx=ctx))
    return ctx.cluster


def test_sets_the_cluster_by_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    f = WeightedSplit(parse_weighted_split(RAW))
    monkeypatch.setattr(split_module, "_draw", lambda: 0.5)
    assert _chosen(f) == "v1"
    monkeypatch.setattr(split_module, "_draw", lambda: 0.95)
    assert _chosen(f) == "v2"


def test_distribution_follows_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_module, "_draw", random.Random(7).random)
    f = WeightedSplit(parse_weighted_split(RAW))
    ctx = make_context()
    counts: Counter[str | None] = Counter()
    for _ in range(10_000):
        ctx.cluster = None
        f.on_request_headers(ctx, ctx.request.headers, True)
        counts[ctx.cluster] += 1
    assert 8_800 < counts["v1"] < 9_200 and counts["v1"] + counts["v2"] == 10_000


def test_an_earlier_choice_stands() -> None:
    f = WeightedSplit(parse_weighted_split(RAW))
    assert _chosen(f, cluster="pinned") == "pinned"


def test_all_zero_weights_answer_503() -> None:
    f = WeightedSplit(parse_weighted_split({"backends": [{"cluster": "a", "weight": 0}]}))
    res = anyio.run(lambda: drive(f, request_head=make_request()))
    assert res.status == 503 and res.local_reply is not None and not res.upstream_called
    assert res.ctx.cluster is None


def test_conformance() -> None:
    check_filter(WEIGHTED_SPLIT, RAW)
    assert WEIGHTED_SPLIT.stream_independent
