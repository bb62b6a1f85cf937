"""The base class of every filter: each hook with its signature, doing nothing.

A filter subclasses :class:`HttpFilter` and overrides the hooks it needs; mypy
then checks each override against the contract. A hook may be ``def`` or
``async def`` (an ``async`` override returns a coroutine, which the declared
``HookResult`` allows); the chain decides once, when it is built, and skips the
hooks a class does not override, so an unused hook costs nothing per request.

Compiled with the hot path (``[tool.plait.compiled]``) so that the built-in
layers, also compiled, can subclass it; ``allow_interpreted_subclasses`` lets
every other filter subclass it as an ordinary class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mypy_extensions import mypyc_attr

from ._context import StreamContext
from ._headers import Headers
from ._messages import UpstreamRequest, UpstreamResponse
from ._policy import Pending, TryAgain, TryOutcome
from ._results import FilterResult

__all__ = ["CallNext", "HookResult", "HttpFilter"]

HookResult = FilterResult | Awaitable[FilterResult] | Pending[FilterResult]
"""What a message hook returns: a result; (``async def``) a coroutine of one; or, from a
sync hook that must wait this time only, ``Pending(awaitable)`` whose result is the hook's
(the proxy awaits it; a hook that never waits costs no task switch)."""

CallNext = Callable[[StreamContext, UpstreamRequest], Awaitable[UpstreamResponse]]
"""What ``around_upstream`` calls to make the try (the layers inside it, then the upstream)."""


@mypyc_attr(allow_interpreted_subclasses=True)
class HttpFilter:
    """The per-stream filter instance; subclass it and override the hooks you need."""

    # -- the messages -----------------------------------------------------------------------

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> HookResult:
        """The request head arrived (``ctx.request``); list order."""
        return None

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> HookResult:
        """A request body chunk; list order."""
        return None

    def on_request_trailers(self, ctx: StreamContext, trailers: Headers) -> HookResult:
        """The request trailers; list order."""
        return None

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> HookResult:
        """The response head (``ctx.response``); reverse order."""
        return None

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> HookResult:
        """A response body chunk; reverse order."""
        return None

    def on_response_trailers(self, ctx: StreamContext, trailers: Headers) -> HookResult:
        """The response trailers; reverse order."""
        return None

    def on_stream_complete(self, ctx: StreamContext) -> None:
        """Exactly once per stream, also when it failed or the client left."""
        return None

    # -- the upstream tries (sdk/_policy.py) ------------------------------------------------

    def before_try(self, ctx: StreamContext, request: UpstreamRequest) -> Any:
        """Before each try that reaches this layer, outermost layer first: the state
        handed back in ``after_try`` (or :class:`~plait.sdk.Pending`)."""
        return None

    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
    ) -> TryAgain | None:
        """After each such try, innermost layer first: ``None`` (done) or
        :class:`~plait.sdk.TryAgain`."""
        return None

    async def around_upstream(
        self, ctx: StreamContext, request: UpstreamRequest, call_next: CallNext
    ) -> UpstreamResponse:
        """The escape hatch for a layer that awaits something of its own; slower than
        ``before_try``/``after_try``. ``call_next`` makes the try."""
        return await call_next(ctx, request)
