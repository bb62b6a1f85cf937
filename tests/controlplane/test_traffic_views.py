"""How ``plait stat``, ``top`` and ``tap`` show their answers (pure functions)."""

from __future__ import annotations

import tracemalloc

import pytest

from plait.controlplane._traffic_views import Top, parse_duration, render_stat, render_tap


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0),
                                               ("1.5", 1.5), ("1h", 3600.0)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_names_the_form() -> None:
    with pytest.raises(ValueError, match="such as 10s"):
        parse_duration("ten")


def test_top_adds_up_by_route_busiest_first() -> None:
    top = Top()
    for i in range(10):
        top.add({"workload": "web", "direction": "inbound", "method": "GET",
                 "path": f"/a?i={i}", "status": 200, "duration_ms": float(i + 1)})  # fmt: skip
    for status in (503, 200, 0):
        top.add({"workload": "web", "direction": "inbound", "method": "POST", "path": "/b",
                 "status": status, "duration_ms": 1.0})  # fmt: skip
    rows = top.rows()
    assert [(r["method"], r["path"], r["count"]) for r in rows] == [("GET", "/a", 10),
                                                                  ("POST", "/b", 3)]  # fmt: skip
    a, b = rows
    assert (a["p50_ms"], a["p95_ms"], a["p99_ms"], a["max_ms"]) == (5.0, 10.0, 10.0, 10.0)
    assert b["successRate"] == pytest.approx(1 / 3, abs=1e-4)
    assert top.rows(limit=1) == [a]
    table = top.render()
    assert table.splitlines()[1].split()[:5] == ["web", "inbound", "GET", "/a", "10"]


def test_top_stays_bounded_under_a_scanners_paths() -> None:
    """A client that sends a new path per request cannot grow the table without bound:
    the busy routes keep their exact counts, and the table says what it dropped."""
    top = Top()
    tracemalloc.start()
    for i in range(60_000):
        top.add({"workload": "web", "direction": "inbound", "method": "GET",
                 "path": f"/scan/{i}", "status": 404, "duration_ms": 0.5})  # fmt: skip
        if i % 10 == 0:
            top.add({"workload": "web", "direction": "inbound", "method": "GET",
                     "path": "/api/items", "status": 200, "duration_ms": 2.0})  # fmt: skip
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(top.routes) <= 2_000 and top.dropped >= 58_000
    assert peak < 8 * 1024 * 1024  # a route with its sample buffer is about 1 KiB
    busiest = top.rows(limit=1)[0]
    assert (busiest["path"], busiest["count"], busiest["p50_ms"]) == ("/api/items", 6_000, 2.0)
    assert top.render(limit=1).splitlines()[-1] == f"({top.dropped} less busy routes dropped)"


def test_stat_table_and_tap_line() -> None:
    row = {"name": "web", "direction": "inbound", "sidecars": 2, "successRate": 0.8,
           "rps": 5.0, "p50_ms": 1.25, "p95_ms": None, "p99_ms": 9.0, "requests": 50}  # fmt: skip
    lines = render_stat([row]).splitlines()
    assert lines[1].split() == ["web", "inbound", "2", "80.00%", "5.00", "1.25ms", "-",
                                "9.00ms", "50"]  # fmt: skip
    line = render_tap({"workload": "web", "direction": "inbound", "method": "GET",
                       "authority": "web:8080", "path": "/x", "status": 503, "duration_ms": 1.5,
                       "peer_identity": "spiffe://td/ns/a/sa/b",
                       "failure_reason": "upstream connect failure"})  # fmt: skip
    assert line == ("web inbound GET web:8080 /x status=503 1.5ms peer=spiffe://td/ns/a/sa/b "
                    "reason='upstream connect failure'\n")  # fmt: skip
