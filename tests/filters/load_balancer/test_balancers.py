"""Endpoint pickers: weights, latency-aware choice, consistent hashing."""

from __future__ import annotations

from collections import Counter

from plait.filters.load_balancer import PeakEwma, RingHash, RoundRobin
from plait.sdk import EndpointInfo

EPS = tuple(EndpointInfo(key=k, weight=w) for k, w in (("a", 1), ("b", 2), ("c", 1)))


def _try(p: PeakEwma, key: str, rtt: float, now: float, *, failed: bool) -> None:
    """One try to ``key`` that took ``rtt`` seconds, ending at ``now``."""
    host = p.start(key)
    assert host is not None
    p.observe(host, rtt, now, failed)


def test_round_robin_is_weighted_and_skips_excluded() -> None:
    rr = RoundRobin(EPS)
    assert Counter(rr.pick(frozenset()) for _ in range(400)) == {"a": 100, "b": 200, "c": 100}
    assert {rr.pick(frozenset({"b"})) for _ in range(10)} == {"a", "c"}
    assert rr.pick(frozenset({"a", "b", "c"})) in {"a", "b", "c"}  # all excluded: still one


def test_peak_ewma_prefers_the_fast_endpoint() -> None:
    p = PeakEwma(EPS[:2] + EPS[2:], default_rtt=0.03)
    now = 0.0
    for key, rtt in (("a", 0.001), ("b", 0.050), ("c", 0.001)):
        _try(p, key, rtt, now, failed=False)
    assert p.start("x") is None  # not an endpoint: nothing to track
    picks = Counter(p.pick(frozenset(), now) for _ in range(300))
    assert picks["b"] == 0  # b only loses: every pair with b has a cheaper partner
    p.start("a")
    p.start("a")
    assert p.load("a", now) == 0.001 * 3  # in-flight requests raise the cost
    later = 60.0
    assert p.estimate("b", later) < 0.050 / 100  # an idle estimate decays: b gets tried again


def test_peak_ewma_penalises_failures_and_takes_peaks_at_once() -> None:
    p = PeakEwma(EPS)
    _try(p, "a", 0.001, 0.0, failed=True)
    assert p.estimate("a", 0.0) >= 0.3
    _try(p, "c", 0.001, 0.0, failed=False)
    _try(p, "c", 0.2, 0.0, failed=False)
    assert p.estimate("c", 0.0) == 0.2


def test_ring_hash_is_consistent_and_moves_only_excluded_keys() -> None:
    ring = RingHash(EPS)
    users = [f"user{i}" for i in range(300)]
    home = {u: ring.pick(u, frozenset()) for u in users}
    assert all(ring.pick(u, frozenset()) == home[u] for u in users)
    assert set(home.values()) == {"a", "b", "c"}
    moved = {u: ring.pick(u, frozenset({"a"})) for u in users}
    assert all(moved[u] == home[u] for u in users if home[u] != "a")
    assert all(moved[u] != "a" for u in users)
