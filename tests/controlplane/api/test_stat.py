"""``plait stat``'s arithmetic over the sidecar's own ``/metrics`` text.

The counters are recorded with the sidecar's collector (``plait.core.metrics.Stats``)
and rendered as a sidecar renders them, so the parser reads the real format.
Percentiles are checked against ``histogram_quantile`` worked by hand.
"""

from __future__ import annotations

import math

import pytest

from plait.controlplane.api._stat import Counts, delta, parse_metrics, quantile, summarize
from plait.core.metrics import Stats


def _text(stats: Stats) -> str:
    return stats.render().decode()


def test_parse_reads_codes_and_buckets_per_listener() -> None:
    stats = Stats()
    for _ in range(3):
        stats.record("in", 200, 0.003, None)
    stats.record("in", 503, 0.2, "upstream connect failure")
    stats.record('odd "name"', 404, 0.0001, None)
    parsed = parse_metrics(_text(stats))
    assert parsed["in"].codes == {200: 3.0, 503: 1.0}
    assert parsed["in"].buckets[math.inf] == 4.0
    assert parsed["in"].buckets[0.005] == 3.0  # cumulative: 0.003 falls under le=0.005
    assert parsed["in"].buckets[0.25] == 4.0
    assert parsed['odd "name"'].codes == {404: 1.0}


def test_delta_is_what_happened_between_two_scrapes() -> None:
    stats = Stats()
    stats.record("in", 200, 0.003, None)
    start = parse_metrics(_text(stats))
    for _ in range(4):
        stats.record("in", 200, 0.003, None)
    stats.record("in", 500, 0.003, None)
    d = delta(start, parse_metrics(_text(stats)))["in"]
    assert d.codes == {200: 4.0, 500: 1.0}
    assert d.buckets[math.inf] == 5.0


def test_a_restarted_sidecar_counts_from_zero() -> None:
    start = {"in": Counts({200: 100.0}, {math.inf: 100.0})}
    end = {"in": Counts({200: 7.0}, {math.inf: 7.0})}
    assert delta(start, end)["in"].codes == {200: 7.0}


def test_quantile_interpolates_as_histogram_quantile() -> None:
    buckets = {0.1: 10.0, 0.2: 30.0, 0.4: 40.0, math.inf: 40.0}
    # rank 20 is the 10th of 20 observations in (0.1, 0.2]: 0.1 + 0.1 * 10/20
    assert quantile(0.5, buckets) == pytest.approx(0.15)
    # rank 2 in the first bucket: from 0 up to 0.1
    assert quantile(0.05, buckets) == pytest.approx(0.02)
    assert quantile(0.95, buckets) == pytest.approx(0.2 + 0.2 * (38 - 30) / 10)
    # in the open top bucket: the highest finite bound
    assert quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == 0.1
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_summary_success_rate_counts_5xx_and_no_response_as_failures() -> None:
    parts = [Counts({200: 30.0, 404: 10.0}, {0.01: 40.0, math.inf: 40.0}),
             Counts({503: 8.0, 0: 2.0}, {0.01: 10.0, math.inf: 10.0})]  # fmt: skip
    row = summarize(parts, 10.0)
    assert row["requests"] == 50 and row["success"] == 40 and row["successRate"] == 0.8
    assert row["rps"] == 5.0
    assert row["codes"] == {"0": 2, "200": 30, "404": 10, "503": 8}
    assert row["p50_ms"] == pytest.approx(5.0)
    empty = summarize([], 10.0)
    assert empty["requests"] == 0 and empty["successRate"] is None and empty["p99_ms"] is None
