"""The filter contract: how a filter is registered, and which hooks it may have.

A filter is registered under a name as a :class:`FilterSpec`: a config parser,
run once per config snapshot (validated, frozen: anything shared between
streams, such as metric instruments, lives on the config object), and a
factory called once per stream with that config (so ``self.`` state is per
request). The instance subclasses :class:`~plait.sdk.HttpFilter` (sdk/_hooks.py)
and overrides the hooks it needs:

=============================================  ==========================================
``on_request_headers(ctx, headers, end)``       request head arrived (``ctx.request``)
``on_request_data(ctx, chunk, end)``            a request body chunk
``on_request_trailers(ctx, trailers)``          request trailers
``on_response_headers(ctx, headers, end)``      response head; filters run in reverse order
``on_response_data(ctx, chunk, end)``           a response body chunk, reverse order
``on_response_trailers(ctx, trailers)``         response trailers, reverse order
``on_stream_complete(ctx)``                     exactly once per stream, also on errors
``before_try(ctx, request)``                    before each upstream try (sdk/_policy.py)
``after_try(ctx, request, outcome)``            after it: done, or ``TryAgain``
``around_upstream(ctx, request, call_next)``    the escape hatch around the try (slower)
=============================================  ==========================================

Request-phase hooks run in list order, response-phase hooks in reverse; of the
upstream layers, the first filter is the outermost.

**Connection filters.** A ``tcp`` listener relays bytes and runs no HTTP hooks, but it
can run filters that decide whole connections: a filter type that gives
:attr:`FilterSpec.connection` builds, once per config snapshot, a
:class:`ConnectionFilter` whose ``on_connection(conn)`` is called when a connection is
accepted (after the mTLS handshake, so ``conn.peer_identity`` is the verified one) and
returns ``None`` to let it through or a reason to close it. Only such types may sit on a
``tcp`` listener.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from ._context import ConnectionContext
from ._hooks import CallNext, HttpFilter
from ._messages import UpstreamRequest, UpstreamResponse

__all__ = [
    "HOOK_NAMES",
    "CallNext",
    "ConnectionFilter",
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
    "before_try",
    "after_try",
    "around_upstream",
)
"""Every hook a filter may implement, in contract order."""

PassThroughFilter = HttpFilter
"""The same class as :class:`HttpFilter` (a filter that overrides nothing passes everything)."""


class FailStrategy(Enum):
    """What the chain does when a filter raises."""

    FAIL_CLOSED = "FailClosed"
    """Answer 500 (or reset the stream if the response has started). The default."""
    FAIL_OPEN = "FailOpen"
    """Skip the filter for the rest of the stream and carry on."""


class ConnectionFilter(Protocol):
    """A connection-level decision on a ``tcp`` listener (see the module docstring)."""

    def on_connection(self, conn: ConnectionContext) -> str | None:
        """``None`` lets the connection through; a string closes it, the string its reason."""
        ...


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
    make: Callable[[C], HttpFilter] | Callable[[], HttpFilter]
    parse_config: Callable[[Mapping[str, Any]], C] | None = None
    description: str = ""
    stream_independent: bool = field(default=False)
    """True when instances keep no per-stream state, so one may serve all streams."""
    connection: Callable[[C], ConnectionFilter] | None = None
    """For a type that may also run on ``tcp`` listeners: builds its connection filter from
    the parsed config (``None``: HTTP listeners only)."""

    def factory(self, config: C | None) -> Callable[[], HttpFilter]:
        """What makes one instance: ``make(config)``, or ``make()`` for a filter that takes
        no config. The one place that decides it: the chain and ``plait.sdk.testing`` call it."""
        make: Callable[..., HttpFilter] = self.make
        if self.parse_config is None and config is None:
            return make
        return functools.partial(make, config)


class FilterRegistry(Protocol):
    """What ``plait_register_filters(registry)`` receives."""

    def register(self, spec: FilterSpec[Any]) -> None: ...
