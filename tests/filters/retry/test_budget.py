"""The retry budget's arithmetic: a share of requests, a floor, a concurrency cap."""

from __future__ import annotations

from plait.filters.retry import BudgetConfig, RetryBudget, SlidingCount


def test_sliding_count_forgets_old_events() -> None:
    c = SlidingCount(10.0)
    c.add(100.0, 5)
    c.add(105.0, 3)
    assert c.count(105.0) == 8
    assert c.count(110.5) == 3  # the first five fell out of the window
    assert c.count(200.0) == 0


def test_percent_of_requests_plus_floor() -> None:
    b = RetryBudget(BudgetConfig(percent=20, interval=10, min_retry_count=2, min_retry_interval=1,
                                 max_active_retries=1000))  # fmt: skip
    now = 1000.0
    for _ in range(100):
        b.deposit(now)
    allowed = 0
    while b.withdraw(now) is None:
        allowed += 1
        b.done()
    assert allowed == 20  # 20% of 100; the floor (2 per second) is already used by them
    assert b.withdraw(now) == "retry_budget_exhausted"
    assert b.withdraw(now + 1.5) is None  # a new second: the floor allows two more
    b.done()
    assert b.withdraw(now + 1.5) is None
    b.done()
    assert b.withdraw(now + 1.5) == "retry_budget_exhausted"


def test_active_retries_are_capped() -> None:
    b = RetryBudget(BudgetConfig(max_active_retries=2))
    assert b.withdraw(0.0) is None and b.withdraw(0.0) is None
    assert b.withdraw(0.0) == "retry_overflow"
    b.done()
    assert b.withdraw(0.0) is None
