"""The filter contract.

A filter is registered under a name as a :class:`FilterSpec`: a config parser,
run once per config snapshot (validated, frozen: anything shared between
streams, such as metric instruments, lives on the config object), and a class
instantiated once per stream with that config (so ``self.`` state is per
request).

Hooks, all optional (a :class:`PassThroughFilter` subclass overrides only what
it needs); each may be ``def`` or ``async def``, the chain decides once, when
it is built:

=========================================  ==========================================
``on_request_headers(ctx, headers, end)``   request head arrived (``ctx.request``)
``on_request_data(ctx, chunk, end)``        a request body chunk
``on_request_trailers(ctx, trailers)``      request trailers
``on_response_headers(ctx, headers, end)``  response head; filters run in reverse order
``on_response_data(ctx, chunk, end)``       a response body chunk, reverse order
``on_response_trailers(ctx, trailers)``     response trailers, reverse order
``on_stream_complete(ctx)``                 exactly once per stream, also on errors
``around_upstream(ctx, request, call_next)`` wraps the call to the chosen backend
``on_upstream_request(ctx, request)``        optional sync first half of ``around_upstream``
``on_upstream_response(ctx, request, out)``  optional sync second half (``_layers.py``)
=========================================  ==========================================

Request-phase hooks run in list order, response-phase hooks in reverse, and
``around_upstream`` layers are composed with the first filter outermost.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from ._context import StreamContext
from ._headers import Headers
from ._messages import UpstreamRequest, UpstreamResponse
from ._results import FilterResult

__all__ = [
    "HOOK_NAMES",
    "CallNext",
    "FailStrategy",
    "FilterRegistry",
    "FilterSpec",
    "HttpFilter",
    "PassThroughFilter",
    "UpstreamRequest",
    "UpstreamResponse",
]

C = TypeVar("C")

HOOK_NAMES = (
    "on_request_headers",
    "on_request_data",
    "on_request_trailers",
    "on_response_headers",
    "on_response_data",
    "on_response_trailers",
    "on_stream_complete",
    "around_upstream",
    "on_upstream_request",
    "on_upstream_response",
)
"""Every hook a filter may implement, in contract order."""


CallNext = Callable[[StreamContext, UpstreamRequest], Awaitable[UpstreamResponse]]


@runtime_checkable
class HttpFilter(Protocol):
    """The per-stream filter instance. Every hook is optional."""


class PassThroughFilter:
    """A filter that does nothing; subclass it and override the hooks you need.

    The chain skips hooks a subclass does not override, so an unused hook costs
    nothing per request.
    """

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        return None

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        return None

    def on_request_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        return None

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        return None

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        return None

    def on_response_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        return None

    def on_stream_complete(self, ctx: StreamContext) -> None:
        return None


class FailStrategy(Enum):
    """What the chain does when a filter raises."""

    FAIL_CLOSED = "FailClosed"
    """Answer 500 (or reset the stream if the response has started). The default."""
    FAIL_OPEN = "FailOpen"
    """Skip the filter for the rest of the stream and carry on."""


@dataclass(frozen=True, slots=True)
class FilterSpec(Generic[C]):
    """How a filter is registered.

    Args:
        name: the registry name configs refer to (``type:`` in a Filter entry).
        make: builds the per-stream instance: ``make(config)`` with the parsed
            config, or ``make()`` when ``parse_config`` is ``None``.
        parse_config: turns the raw mapping from YAML/xDS into the frozen config
            object; raises :class:`~plait.sdk.ConfigError` naming the field.
            ``None`` means the filter takes no config (any given is an error).
        description: one line for ``plait filters`` and the docs.
    """

    name: str
    make: Callable[[C], object]
    parse_config: Callable[[Mapping[str, Any]], C] | None = None
    description: str = ""
    stream_independent: bool = field(default=False)
    """True when instances keep no per-stream state, so one may serve all streams."""

    def factory(self, config: C | None) -> Callable[[], object]:
        """What makes one instance: ``make(config)``, or ``make()`` for a filter that takes
        no config. The one place that decides it: the chain and ``plait.sdk.testing`` call it.
        """
        if self.parse_config is None and config is None:
            return self.make  # type: ignore[return-value]
        return functools.partial(self.make, config)  # type: ignore[arg-type]


class FilterRegistry(Protocol):
    """What ``plait_register_filters(registry)`` receives."""

    def register(self, spec: FilterSpec[Any]) -> None: ...
