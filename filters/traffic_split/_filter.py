"""``weighted-split``: choose the backend cluster for a request, by weight.

A header-phase decision recorded in ``ctx.cluster`` (the upstream layers read
it); it proxies nothing itself. If an earlier filter already chose a cluster,
that choice stands. Stateless, so one instance serves every stream.
"""

from __future__ import annotations

import random

from plait.sdk import FilterResult, Headers, LocalReply, PassThroughFilter, StreamContext

from ._config import WeightedSplitConfig

__all__ = ["NO_BACKEND", "WeightedSplit"]

NO_BACKEND = LocalReply(503, b"no backend with a nonzero weight\n", reason="no backend")
"""A rule whose backends all have weight 0 answers 503, as Envoy does when a route leaves it
no upstream ("no healthy upstream"): a gRPC client sees UNAVAILABLE, which is also what a
proxyless gRPC client that got the same route fails its calls with."""

_draw = random.random  # module-level so tests can replace it


class WeightedSplit(PassThroughFilter):
    __slots__ = ("_config",)

    def __init__(self, config: WeightedSplitConfig) -> None:
        self._config = config

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        if ctx.cluster is not None:
            return None
        config = self._config
        cluster = config.single if config.single is not None else config.pick(_draw())
        if cluster is None:
            return NO_BACKEND
        ctx.cluster = cluster
        return None
