"""``retry``: try again on a retryable failure, within the deadline and the budget.

Theory of operation
-------------------
A policy (sdk/_policy.py), outermost of the resilience layers: its
``before_try`` runs once per request, its ``after_try`` after each try, and a
``TryAgain`` makes the core wait the backoff and try again through the inner
layers (circuit breaker, load balancer, the core's per-try timeout), which act
per try. For each request:

1. the first try deposits into the cluster's :class:`RetryBudget`;
2. a try that fails with a retryable condition (connect failure, reset before
   the response, per-try timeout, a listed status or gRPC status in the
   response head) may be retried if: tries are left (``attempts`` retries),
   the method is idempotent (RFC 9110 §9.2.2; a connect failure is always
   safe, nothing was sent; so is a listed gRPC status: gRPC calls are all
   POST, and Istio retries them by default), the body can be replayed (``_replay.py``), the
   backoff fits before the deadline, and the budget allows one more retry;
3. before the retry: wait full-jitter exponential backoff,
   ``uniform(0, min(maxBackoff, backoff*2^n))``, or the response's
   ``Retry-After`` seconds if longer; the retry excludes every endpoint tried
   so far (``UpstreamRequest.exclude``), so it goes elsewhere when it can.

When a retry is refused the caller gets the last try's outcome: the response
as the upstream sent it, or the error. When the budget refused it and the try
had no response, the error is :class:`RetryBudgetExhausted` (503, reason
"retry budget exhausted"). Only the response *head* is inspected, and the
response is returned before its body is sent on, so nothing is ever retried
once the response has started towards the client.

Per-cluster counters: ``retry``, ``retry_budget_exhausted``, ``retry_overflow``,
``retry_not_replayable``.
"""

from __future__ import annotations

import math
import random
import time
from typing import Final

from plait.sdk import (
    HttpFilter,
    StashKey,
    StreamContext,
    TryAgain,
    TryOutcome,
    UpstreamCluster,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequest,
    UpstreamReset,
    UpstreamResponse,
    UpstreamTimeout,
)

from ._budget import RetryBudget
from ._config import RetryConfig
from ._replay import Replay

__all__ = ["IDEMPOTENT", "Retry", "RetryBudgetExhausted"]

_monotonic: Final = time.monotonic  # compiled: a C static, not a module attribute lookup per call

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 §9.2.2 idempotent methods."""
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this is not waited for (no retry)."""
_BUDGET: StashKey[tuple[RetryConfig, RetryBudget]] = StashKey("retry.budget")
"""The cluster's budget, with the route config that last asked for it."""
_draw = random.random  # module-level so tests can replace it


class RetryBudgetExhausted(UpstreamError):
    status_hint = 503
    reason = "retry budget exhausted"


def _budget(cluster: UpstreamCluster, config: RetryConfig) -> RetryBudget:
    found = cluster.stash.get(_BUDGET, None)
    if found is not None and found[0] is config:
        return found[1]  # the common case: the same config as the last request
    wanted = config.budget_for(cluster.name)
    budget = found[1] if found is not None else None
    if budget is None or (budget.config is not wanted and budget.config != wanted):
        budget = new = RetryBudget(wanted)
        cluster.reports["retryBudget"] = lambda: new.describe(time.monotonic())
    cluster.stash[_BUDGET] = (config, budget)
    return budget


_NOTHING: Final[frozenset[str]] = frozenset()


class _First:
    """What one request's retries share (the policy's state). A plain class: one per
    request, and a compiled dataclass keeps an interpreted ``__init__``."""

    __slots__ = ("budget", "cluster", "endpoint", "exclude", "replay", "retries", "tried")

    def __init__(
        self,
        cluster: UpstreamCluster,
        budget: RetryBudget,
        replay: Replay,
        endpoint: str | None,
        exclude: frozenset[str],
    ) -> None:
        self.cluster = cluster
        self.budget = budget
        self.replay = replay
        self.endpoint = endpoint  # as the request came in: inner layers change them per try
        self.exclude = exclude
        self.retries = 0
        self.tried: frozenset[str] = _NOTHING
        """The endpoints tried so far (empty, and no set made, until a retry)."""


class Retry(HttpFilter):
    __slots__ = ("_config",)

    def __init__(self, config: RetryConfig) -> None:
        self._config = config

    def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> _First | None:
        config, cluster = self._config, ctx.upstream_cluster
        if cluster is None or config.attempts == 0:
            return None
        budget = _budget(cluster, config)
        budget.deposit(_monotonic())
        replay = Replay(request.body, config.max_replay_bytes)
        first = _First(cluster, budget, replay, request.endpoint, request.exclude)
        request.body = replay.first()
        return first

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[_First | None]
    ) -> TryAgain | None:
        """Another try when this one failed in a retryable way and nothing refuses it."""
        first = outcome.state
        if first is None:
            return None
        if first.retries:
            first.budget.done()  # the retry in flight ended
        response, error = outcome.response, outcome.error
        grpc = request.head.http_version == "2"
        if response is None:
            if not (isinstance(error, UpstreamError) and self._retryable_error(error)):
                return None  # not retryable (or cancelled): the outcome stands
        elif not self._retryable_response(response, grpc):
            return None
        if ctx.upstream_address:
            first.tried = first.tried | {ctx.upstream_address}
        never_sent = isinstance(error, UpstreamConnectError)
        # gRPC calls are all POST; a retryable grpc-status means the call failed as a
        # whole (Istio retries them by default), so the method does not matter then.
        grpc_failure = grpc and response is not None and response.head.status == 200
        safe = self._config.retry_non_idempotent or request.head.method in IDEMPOTENT
        left = outcome.time_left
        refused = self._refusal(first.retries, safe or never_sent or grpc_failure, response, left)
        next_body = None if refused else first.replay.again(never_sent)
        if next_body is None and not refused:
            refused = "retry_not_replayable"
        if refused is None:
            refused = first.budget.withdraw(_monotonic())
        if refused is not None:
            first.cluster.count(refused)
            if response is None and refused == "retry_budget_exhausted":
                raise RetryBudgetExhausted(f"retry budget exhausted after: {error}") from error
            return None  # the caller gets the last try's outcome
        first.retries += 1
        first.cluster.count("retry")
        assert next_body is not None
        again = UpstreamRequest(
            head=request.head,
            body=next_body,
            endpoint=first.endpoint,
            exclude=first.exclude | first.tried,
        )
        return TryAgain(again, after=self._delay(first.retries, response, left))

    def _retryable_error(self, exc: UpstreamError) -> bool:
        c = self._config
        if isinstance(exc, UpstreamConnectError):
            return c.on("connect-failure")
        if isinstance(exc, UpstreamTimeout):
            return c.on("timeout")
        if isinstance(exc, UpstreamReset):
            return c.on("reset")
        return False

    def _retryable_response(self, response: UpstreamResponse, grpc: bool) -> bool:
        """A listed status, or (``grpc``: the call came over HTTP/2, as gRPC needs) a
        listed ``grpc-status`` in the head of a trailers-only response."""
        c = self._config
        head = response.head
        if head.status in c.statuses:
            return True
        if grpc and c.grpc_statuses and head.status == 200:
            raw = head.headers.get_raw(b"grpc-status")  # a trailers-only gRPC response
            return raw is not None and raw.decode("latin-1") in c.grpc_statuses
        return False

    def _refusal(
        self, retry: int, safe: bool, response: UpstreamResponse | None, left: float
    ) -> str | None:
        """Why no retry may follow (a counter name), before the budget is asked."""
        if retry >= self._config.attempts:
            return "retry_attempts_exhausted"
        if not safe:
            return "retry_not_idempotent"
        wait = _retry_after(response)
        if wait is not None and (wait > MAX_RETRY_AFTER or wait >= left):
            return "retry_after_too_long"
        if left <= self._config.backoff:
            return "retry_no_time_left"
        return None

    def _delay(self, retry: int, response: UpstreamResponse | None, left: float) -> float:
        c = self._config
        delay: float = _draw() * min(c.max_backoff, c.backoff * 2 ** (retry - 1))
        wait = _retry_after(response)
        if wait is not None and wait > delay:
            delay = wait
        return min(delay, max(left - 0.001, 0.0)) if left != math.inf else delay


def _retry_after(response: UpstreamResponse | None) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3; the HTTP-date form is not honoured)."""
    if response is None:
        return None
    value = response.head.headers.get("retry-after")
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
