"""A filter's metric instruments (``plait.sdk.metrics``), as a filter author uses them."""

from __future__ import annotations

import pytest

from plait.sdk import metrics
from plait.sdk.metrics import Registry


def test_counters_and_gauges_keep_values_by_label() -> None:
    reg = Registry()
    hits = reg.counter("team_hits_total", "Hits", ("route", "code"))
    hits.inc("a", "200")
    hits.inc("a", "200", amount=2)
    hits.inc("b", "503")
    temp = reg.gauge("team_queue", "Queued", ("queue",))
    temp.set(3, "q")
    temp.add(-1, "q")
    families = {name: (kind, labels, values) for name, kind, _, labels, values in reg.collect()}
    assert families["team_hits_total"] == (
        "counter",
        ("route", "code"),
        {("a", "200"): 3.0, ("b", "503"): 1.0},
    )
    assert families["team_queue"] == ("gauge", ("queue",), {("q",): 2.0})


def test_asking_again_returns_the_same_instrument_so_a_reload_keeps_counts() -> None:
    reg = Registry()
    first = reg.counter("team_reloaded_total", "Kept", ("x",))
    first.inc("1")
    again = reg.counter("team_reloaded_total", "Kept", ("x",))
    assert again is first
    assert dict(next(iter(reg.collect()))[4]) == {("1",): 1.0}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.counter("9bad", "x"), "expected"),
        (lambda r: r.counter("ok_total", "x", ("bad-label",)), "label name"),
        (lambda r: r.counter("ok_total", "x", ("__reserved",)), "label name"),
        (lambda r: r.gauge("taken_total", "x"), "exists as a counter"),
        (lambda r: r.counter("taken_total", "x", ("other",)), "labels"),
        (lambda r: r.counter("core_total", "x"), "sidecar's own metrics"),
    ],
)
def test_invalid_instruments_are_refused_with_the_reason(make: object, message: str) -> None:
    reg = Registry()
    reg.counter("taken_total", "x")
    reg.reserve(["core_total"])
    with pytest.raises(ValueError, match=message):
        make(reg)  # type: ignore[operator]


def test_wrong_label_count_and_negative_increments_are_refused() -> None:
    c = metrics.REGISTRY.counter("test_sdk_guarded_total", "x", ("a",))
    with pytest.raises(ValueError, match="expected 1 label values"):
        c.inc()
    with pytest.raises(ValueError, match="cannot go down"):
        c.inc("v", amount=-1)


def test_histograms_count_cumulative_buckets_sum_and_count() -> None:
    reg = Registry()
    waits = reg.histogram("team_wait_seconds", "Waits", ("queue",), (0.1, 1))
    waits.observe(0.05, "q")
    waits.observe(0.5, "q")
    waits.observe(7, "q")
    (name, kind, _, labels, values), *_ = reg.collect()
    assert (name, kind, labels) == ("team_wait_seconds", "histogram", ("queue",))
    assert values.pop(("q", "_sum", "")) == pytest.approx(7.55)
    assert values == {
        ("q", "_bucket", "0.1"): 1.0,
        ("q", "_bucket", "1.0"): 2.0,
        ("q", "_bucket", "+Inf"): 3.0,
        ("q", "_count", ""): 3.0,
    }
    assert reg.histogram("team_wait_seconds", "Waits", ("queue",), (5,)) is waits
    with pytest.raises(ValueError, match="bucket"):
        reg.histogram("team_other", "No buckets")
    with pytest.raises(ValueError, match="exists as a histogram"):
        reg.counter("team_wait_seconds", "Waits", ("queue",))
