"""Upstream layers as policies: asked before and after each try, never waiting themselves.

A layer (retry, circuit breaker, load balancer, or your own) implements two plain
``def`` hooks of :class:`~plait.sdk.HttpFilter`:

``before_try(ctx, request) -> state``
    Before a try, outermost layer first. May choose the endpoint
    (``request.endpoint``), avoid some (``request.exclude``), or refuse the try
    by raising an :class:`~plait.sdk.UpstreamError` (its ``status_hint`` and
    ``reason`` answer the client, unless an outer layer tries again). Returns
    any value: it comes back as :attr:`TryOutcome.state`. A layer that must wait
    before the try (a free slot) returns :class:`Pending`: the proxy awaits it,
    within the request's deadline, and its result is the state.

``after_try(ctx, request, outcome) -> TryAgain | None``
    Once the try ended, innermost layer first, with its :class:`TryOutcome`.
    ``None``: done, the outcome goes on to the layers outside. :class:`TryAgain`:
    the proxy waits ``after`` seconds, then makes another try from the next layer
    inwards with ``TryAgain.request`` (the layers outside see only the last
    try's outcome). When the client leaves or the request's deadline passes,
    every layer still waiting for an outcome gets one whose ``error`` is a
    cancellation; what it returns then is ignored.

The outcome object is the layer's for the call only (the proxy hands the same
one on to the next layer out): keep what you need from it, not the object.

Per request, a layer's ``before_try`` runs once for each try that reaches it
and its ``after_try`` once for each of those, also on failures and
cancellation. The proxy owns every wait: the backoff of a ``TryAgain``, the
per-try timeout (the route's ``backendRequest``) and the request's deadline.
Because both hooks are plain calls, a request whose tries need no waiting is
answered without a task switch.

A layer that must await something of its own inside the try (a hedged request,
a call to another service) implements ``around_upstream`` instead: the escape
hatch, slower (one coroutine per layer per request), with the layers inside it
composed into ``call_next``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Final, Generic, TypeVar

from ._messages import UpstreamRequest, UpstreamResponse

__all__ = ["Pending", "TryAgain", "TryOutcome"]

S = TypeVar("S")
_monotonic: Final = time.monotonic


class TryOutcome(Generic[S]):
    """One try's outcome, as a layer's ``after_try`` sees it."""

    __slots__ = ("deadline", "error", "response", "state", "tries")

    def __init__(
        self,
        response: UpstreamResponse | None,
        error: BaseException | None,
        state: S,
        tries: int,
        deadline: float,
    ) -> None:
        self.response = response
        """The response head (its body still to come), when the try got one."""
        self.error = error
        """What the try raised, when it got no response; a cancellation when the
        request is abandoned (the client left, the deadline passed)."""
        self.state = state
        """What this layer's ``before_try`` returned for this request."""
        self.tries = tries
        """Tries this layer has seen end for this request, this one included (1, 2, …)."""
        self.deadline = deadline
        """When the request's deadline passes, on :func:`time.monotonic`'s clock
        (``math.inf`` when it has none)."""

    @property
    def time_left(self) -> float:
        """Seconds until the request's deadline (``math.inf`` when it has none)."""
        return self.deadline - _monotonic()

    def result(self) -> UpstreamResponse:
        """The response, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


class TryAgain:
    """``after_try``'s answer: one more try, with ``request``, after ``after`` seconds."""

    __slots__ = ("after", "request")

    def __init__(self, request: UpstreamRequest, after: float = 0.0) -> None:
        self.request = request
        """What the next try sends (a fresh body for a replay, ``exclude``, ``endpoint``)."""
        self.after = after
        """The backoff: seconds the proxy waits before the try (capped by the deadline)."""


class Pending(Generic[S]):
    """``before_try``'s answer when the layer must wait first: the proxy awaits ``ready``
    (its result is the state; what it raises refuses the try)."""

    __slots__ = ("ready",)

    def __init__(self, ready: Awaitable[S]) -> None:
        self.ready = ready
