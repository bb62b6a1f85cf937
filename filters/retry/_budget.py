"""The retry budget: retries may add at most a fixed share of traffic (GEP-3388).

Theory of operation
-------------------
A budget lives in the cluster's shared state (one per cluster, across every
stream and route to it). Every first try deposits one request; a retry is
allowed when

* fewer than ``max_active_retries`` retries are in flight (the breaker's
  ``maxRetries``), and
* retries over the last ``interval`` are fewer than ``percent`` of the
  requests over the same window, **or** retries over the last
  ``min_retry_interval`` are fewer than ``min_retry_count`` (the floor that
  lets a quiet service retry at all).

So over any window of ``interval`` seconds, retries stay below
``percent``·requests + ``min_retry_count``·interval/``min_retry_interval``:
a failing dependency sees at most that much extra load, never a retry storm.

Counts are kept in :class:`SlidingCount`, a ring of ten buckets per window
rotated lazily on use (no timer task): O(1) per request, accurate to a tenth
of the window.
"""

from __future__ import annotations

from ._config import BudgetConfig

__all__ = ["RetryBudget", "SlidingCount"]


class SlidingCount:
    """Events in the last ``span`` seconds (``slots`` buckets, rotated on use)."""

    __slots__ = ("_counts", "_head", "_width", "total")

    def __init__(self, span: float, slots: int = 10) -> None:
        self._width = span / slots
        self._counts = [0] * slots
        self._head = 0
        self.total = 0

    def _advance(self, now: float) -> None:
        idx = int(now / self._width)
        steps = idx - self._head
        if steps <= 0:
            return
        counts, n = self._counts, len(self._counts)
        for i in range(1, min(steps, n) + 1):
            pos = (self._head + i) % n
            self.total -= counts[pos]
            counts[pos] = 0
        self._head = idx

    def add(self, now: float, n: int = 1) -> None:
        if int(now / self._width) != self._head:
            self._advance(now)
        self._counts[self._head % len(self._counts)] += n
        self.total += n

    def count(self, now: float) -> int:
        self._advance(now)
        return self.total


class RetryBudget:
    """One cluster's budget (see the module docstring)."""

    __slots__ = ("_floor", "_requests", "_retries", "active", "config")

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._requests = SlidingCount(config.interval)
        self._retries = SlidingCount(config.interval)
        self._floor = SlidingCount(config.min_retry_interval)
        self.active = 0

    def deposit(self, now: float) -> None:
        """A first try was sent."""
        self._requests.add(now)

    def withdraw(self, now: float) -> str | None:
        """Take one retry: ``None`` if allowed (then call :meth:`done` after it), else
        the event that refused it: ``retry_overflow`` or ``retry_budget_exhausted``."""
        c = self.config
        if self.active >= c.max_active_retries:
            return "retry_overflow"
        within = self._retries.count(now) < self._requests.count(now) * c.percent / 100
        if not within and self._floor.count(now) >= c.min_retry_count:
            return "retry_budget_exhausted"
        self._retries.add(now)
        self._floor.add(now)
        self.active += 1
        return None

    def done(self) -> None:
        """A retry allowed by :meth:`withdraw` has finished."""
        self.active -= 1

    def describe(self, now: float) -> dict[str, object]:
        return {
            "requests": self._requests.count(now),
            "retries": self._retries.count(now),
            "activeRetries": self.active,
            "percent": self.config.percent,
            "interval": self.config.interval,
        }
