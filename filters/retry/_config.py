"""Config of ``retry``: what to retry, how often, how long to wait, and the budget.

The translator builds it from an HTTPRoute rule's ``retry`` (GEP-1731) and the
``retryConstraint`` of each backend's ``BackendTrafficPolicy`` (GEP-3388);
durations are seconds. By hand::

    {attempts: 2, codes: [503], retryOn: [connect-failure, reset, timeout],
     backoff: 0.025, maxBackoff: 0.25, retryNonIdempotent: false,
     maxReplayBytes: 65536,
     budgets: {"svc.ns:80": {percent: 20, interval: 10, minRetryCount: 10,
                             minRetryInterval: 1, maxActiveRetries: 3}}}

A cluster without an entry in ``budgets`` gets the default budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._numbers import number
from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError

__all__ = ["GRPC_CODES", "BudgetConfig", "RetryConfig", "parse_retry"]

GRPC_CODES = {
    "cancelled": "1",
    "deadline-exceeded": "4",
    "resource-exhausted": "8",
    "internal": "13",
    "unavailable": "14",
}
"""gRPC status names (Envoy's ``retry_on`` vocabulary) → ``grpc-status`` values."""
_CONDITIONS = ("connect-failure", "reset", "timeout", "5xx", "gateway-error", *GRPC_CODES)
_DEFAULT_ON = ("connect-failure", "reset", "timeout", "unavailable", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    """GEP-3388 ``retryConstraint`` plus the breaker's ``maxRetries`` (concurrent retries)."""

    percent: float = 20.0
    interval: float = 10.0
    min_retry_count: int = 10
    min_retry_interval: float = 1.0
    max_active_retries: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    attempts: int = 2
    """Retries after the first try (GEP-1731 ``attempts``)."""
    codes: frozenset[int] = frozenset()
    retry_on: frozenset[str] = frozenset(_DEFAULT_ON)
    backoff: float = 0.025
    max_backoff: float = 0.25
    retry_non_idempotent: bool = False
    max_replay_bytes: int = 64 * 1024
    budgets: Mapping[str, BudgetConfig] = field(default_factory=dict)
    default_budget: BudgetConfig = BudgetConfig()
    statuses: frozenset[int] = field(init=False, repr=False, compare=False)
    """Every response status that is retried (``codes`` + ``5xx`` / ``gateway-error``)."""
    grpc_statuses: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        statuses = set(self.codes)
        if "5xx" in self.retry_on:
            statuses |= set(range(500, 600))
        if "gateway-error" in self.retry_on:
            statuses |= {502, 503, 504}
        object.__setattr__(self, "statuses", frozenset(statuses))
        grpc = {code for name, code in GRPC_CODES.items() if name in self.retry_on}
        object.__setattr__(self, "grpc_statuses", frozenset(grpc))

    def on(self, condition: str) -> bool:
        """Whether a connection-level failure (connect-failure, reset, timeout) is retried;
        ``5xx`` and ``gateway-error`` include all three, as in Envoy."""
        on = self.retry_on
        return condition in on or "5xx" in on or "gateway-error" in on

    def budget_for(self, cluster: str) -> BudgetConfig:
        return self.budgets.get(cluster, self.default_budget)


def parse_retry(raw: Mapping[str, Any]) -> RetryConfig:
    r = ConfigReader(raw)
    codes = []
    for value, where in r.items("codes", max_items=64):
        if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
            raise ConfigError(f"expected a status code 400..599, got {value!r}", field=where)
        codes.append(value)
    retry_on = []
    for value, where in r.items("retryOn", max_items=16):
        if value not in _CONDITIONS:
            raise ConfigError(
                f"expected a retry condition ({', '.join(_CONDITIONS)}), got {value!r}", field=where
            )
        retry_on.append(str(value))
    backoff = number(r, "backoff", 0.025, lo=0.001, hi=3600)
    max_backoff = number(r, "maxBackoff", max(0.25, backoff), lo=0.001, hi=3600)
    if max_backoff < backoff:
        raise ConfigError(
            f"expected at least backoff ({backoff:g}s), got {max_backoff:g}s", field="maxBackoff"
        )
    non_idem = r.value("retryNonIdempotent", False)
    if not isinstance(non_idem, bool):
        raise ConfigError(f"expected true or false, got {non_idem!r}", field="retryNonIdempotent")
    budgets: dict[str, BudgetConfig] = {}
    raw_budgets = r.value("budgets", None) or {}
    if not isinstance(raw_budgets, Mapping):
        raise ConfigError("expected a mapping of cluster → budget", field="budgets")
    for cluster, b in raw_budgets.items():
        budgets[str(cluster)] = _budget(ConfigReader(b, f"budgets.{cluster}"))
    config = RetryConfig(
        attempts=r.integer("attempts", 2, lo=0, hi=100),
        codes=frozenset(codes),
        retry_on=frozenset(retry_on)
        if r.raw.get("retryOn") is not None
        else frozenset(_DEFAULT_ON),
        backoff=backoff,
        max_backoff=max_backoff,
        retry_non_idempotent=non_idem,
        max_replay_bytes=r.integer("maxReplayBytes", 64 * 1024, lo=0, hi=64 << 20),
        budgets=budgets,
    )
    r.done()
    return config


def _budget(b: ConfigReader) -> BudgetConfig:
    out = BudgetConfig(
        percent=number(b, "percent", 20, lo=0, hi=100),
        interval=number(b, "interval", 10, lo=1, hi=3600),
        min_retry_count=b.integer("minRetryCount", 10, lo=0, hi=1 << 30),
        min_retry_interval=number(b, "minRetryInterval", 1, lo=0.001, hi=3600),
        max_active_retries=b.integer("maxActiveRetries", 3, lo=0, hi=1 << 30),
    )
    b.done()
    return out
