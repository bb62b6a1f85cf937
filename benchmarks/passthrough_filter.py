"""``bench-passthrough``: a filter that does nothing, for measuring the chain's own cost.

The sidecar imports this module when ``PLAIT_PLUGINS=benchmarks.passthrough_filter``
(the harness sets it, with the repository on ``PYTHONPATH``). It overrides the two
header hooks so that the chain really calls them (hooks a ``PassThroughFilter``
subclass leaves alone are skipped by the chain and would cost nothing).
"""

from __future__ import annotations

from plait.plugins import hookimpl
from plait.sdk import (
    FilterRegistry,
    FilterResult,
    FilterSpec,
    Headers,
    PassThroughFilter,
    StreamContext,
)

__all__ = ["BenchPassthrough", "plait_register_filters"]


class BenchPassthrough(PassThroughFilter):
    """Called on request and response headers; changes nothing."""

    def __init__(self, config: object = None) -> None:
        # No config (parse_config=None): accept being made with None or with nothing.
        pass

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        return None

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        return None


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(
            name="bench-passthrough",
            make=BenchPassthrough,
            parse_config=None,
            description="does nothing on request and response headers (benchmarks)",
            stream_independent=False,
        )
    )
