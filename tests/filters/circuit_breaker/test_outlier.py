"""Outlier detection's state table: eject, cap, probe, re-admit or re-eject."""

from __future__ import annotations

from plait.filters.circuit_breaker import BreakerConfig, Outliers

KEYS = ("a", "b", "c", "d")
CFG = BreakerConfig(consecutive_5xx=3, base_ejection_time=10, max_ejection_time=25,
                    max_ejection_percent=50, interval=1000, success_rate=None)  # fmt: skip


def _fail(o: Outliers, key: str, n: int, now: float = 0.0, status: int = 500) -> None:
    for _ in range(n):
        o.record(key, status, now, CFG)


def test_consecutive_errors_eject_and_a_success_resets() -> None:
    o = Outliers(KEYS)
    _fail(o, "a", 2)
    o.record("a", 200, 0, CFG)
    _fail(o, "a", 2)
    assert o.excluded(0, CFG) == (frozenset(), None)
    _fail(o, "a", 1, status=0)  # a connect failure counts as a 5xx
    assert o.excluded(1, CFG) == (frozenset({"a"}), None)
    assert o.events == ["ejection"]


def test_max_ejection_percent() -> None:
    o = Outliers(KEYS)
    for key in KEYS:
        _fail(o, key, 3)
    assert o.excluded(1, CFG)[0] == {"a", "b"}  # 50% of 4
    assert o.events.count("ejection_skipped_max_percent") == 2


def test_probe_readmits_or_doubles_the_ejection() -> None:
    o = Outliers(KEYS)
    _fail(o, "a", 3, now=0)
    assert o.excluded(9.9, CFG) == (frozenset({"a"}), None)
    excluded, probe = o.excluded(10.0, CFG)
    assert probe == "a" and not excluded
    o.start_probe("a")
    assert o.excluded(10.0, CFG) == (frozenset({"a"}), None)  # nothing else while probing
    o.record("a", 503, 10.0, CFG)  # the probe failed: out for 2 x 10 s
    assert o.excluded(29.9, CFG)[0] == {"a"}
    assert o.excluded(30.0, CFG)[1] == "a"
    o.start_probe("a")
    o.record("a", 200, 30.0, CFG)
    assert o.excluded(30.0, CFG) == (frozenset(), None)
    assert o.events[-1] == "readmission"
    _fail(o, "a", 3, now=31)  # third ejection: 30 s, capped at 25
    assert o.hosts["a"].until == 31 + 25


def test_success_rate_ejects_the_outlier() -> None:
    cfg = BreakerConfig(consecutive_5xx=0, interval=1, success_rate=(3, 10, 1.0))
    o = Outliers(KEYS)
    for key in KEYS:
        for i in range(20):
            bad = key == "d" and i % 2 == 0  # d: 50% success, others 100%
            o.record(key, 500 if bad else 200, 0.5, cfg)
    o.next_sweep = 1.0
    assert o.excluded(1.0, cfg)[0] == {"d"}


def test_failure_percentage() -> None:
    cfg = BreakerConfig(consecutive_5xx=0, interval=1, success_rate=None,
                        failure_percentage=(50, 2, 4), max_ejection_percent=100)  # fmt: skip
    o = Outliers(("a", "b"))
    for status in (500, 500, 500, 200):
        o.record("a", status, 0.5, cfg)
        o.record("b", 200, 0.5, cfg)
    o.next_sweep = 1.0
    assert o.excluded(1.0, cfg)[0] == {"a"}
