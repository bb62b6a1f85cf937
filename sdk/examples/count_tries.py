"""``example-count-tries``: an upstream layer that counts every try by its result.

A policy (``after_try``): the proxy calls it after each try, including the ones a
retry layer inside or outside it makes. Its counter is a ``plait.sdk.metrics``
instrument, made once when the module loads and shown on the sidecar's
``/metrics`` as ``example_upstream_tries_total{result}``; the label is the status
class or the error's name, so its values stay few.
"""

from __future__ import annotations

from typing import Any

from plait.plugins import hookimpl
from plait.sdk import (
    FilterRegistry,
    FilterSpec,
    HttpFilter,
    StreamContext,
    TryAgain,
    TryOutcome,
    UpstreamRequest,
    metrics,
)

TRIES = metrics.counter(
    "example_upstream_tries_total", "Upstream tries seen by example-count-tries", ("result",)
)


class CountTries(HttpFilter):
    def after_try(
        self, ctx: StreamContext, request: UpstreamRequest, outcome: TryOutcome[Any]
    ) -> TryAgain | None:
        if outcome.response is not None:
            TRIES.inc(f"{outcome.response.head.status // 100}xx")
        else:
            TRIES.inc(type(outcome.error).__name__)
        return None


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(
            name="example-count-tries",
            make=CountTries,
            description="count upstream tries by result (a metrics example)",
            stream_independent=True,
        )
    )
