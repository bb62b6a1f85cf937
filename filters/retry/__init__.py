"""``retry``: retries with a budget (an ``around_upstream`` layer; HTTPRoute ``retry``)."""

from plait.sdk import FilterSpec

from ._budget import RetryBudget, SlidingCount
from ._config import BudgetConfig, RetryConfig, parse_retry
from ._filter import IDEMPOTENT, Retry, RetryBudgetExhausted

__all__ = [
    "IDEMPOTENT",
    "RETRY",
    "BudgetConfig",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryConfig",
    "SlidingCount",
    "parse_retry",
]

RETRY = FilterSpec(
    name="retry",
    make=Retry,
    parse_config=parse_retry,
    description="retry failed tries (backoff, Retry-After, another endpoint) within a budget",
    stream_independent=True,  # per-request state lives in around_upstream's frame
)
