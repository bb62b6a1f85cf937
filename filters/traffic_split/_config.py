"""Config of ``weighted-split``: ``{backends: [{cluster: NAME, weight: INT}]}``.

Weights follow the Gateway API ``backendRefs[].weight``: default 1, range
0..1,000,000, proportional (not percentages); a 0 weight gets no traffic. If
every weight is 0 the filter answers 503 (reason ``no backend``), as Envoy answers
a request its route gives no upstream; ``plait apply`` warns about such a rule.
The translator appends this filter to every route rule, built from the rule's
``backendRefs``; it may also be configured by hand on a listener.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError

__all__ = ["MAX_WEIGHT", "SplitBackend", "WeightedSplitConfig", "parse_weighted_split"]

MAX_WEIGHT = 1_000_000
_CLUSTER = re.compile(r"^\S+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitBackend:
    cluster: str
    weight: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedSplitConfig:
    backends: tuple[SplitBackend, ...]
    single: str | None = field(init=False, repr=False, compare=False)
    """The cluster when only one backend has weight (no random draw needed)."""
    clusters: tuple[str, ...] = field(init=False, repr=False, compare=False)
    cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)
    total: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        live = [b for b in self.backends if b.weight > 0]
        object.__setattr__(self, "clusters", tuple(b.cluster for b in live))
        object.__setattr__(self, "cumulative", tuple(accumulate(b.weight for b in live)))
        object.__setattr__(self, "total", sum(b.weight for b in live))
        object.__setattr__(self, "single", live[0].cluster if len(live) == 1 else None)

    def pick(self, draw: float) -> str | None:
        """The cluster for a uniform ``draw`` in [0, 1); ``None`` if every weight is 0."""
        if self.single is not None:
            return self.single
        if not self.clusters:
            return None
        i = bisect_right(self.cumulative, draw * self.total)
        return self.clusters[min(i, len(self.clusters) - 1)]  # float rounding at draw → 1


def parse_weighted_split(raw: Mapping[str, Any]) -> WeightedSplitConfig:
    """Parse and validate; raises :class:`ConfigError` naming the field."""
    r = ConfigReader(raw)
    backends: list[SplitBackend] = []
    for b in r.maps("backends", max_items=256):
        cluster = b.text("cluster")
        if not _CLUSTER.match(cluster):
            raise ConfigError(f"expected a cluster name, got {cluster!r}", field=b.at("cluster"))
        backends.append(
            SplitBackend(cluster=cluster, weight=b.integer("weight", 1, lo=0, hi=MAX_WEIGHT))
        )
        b.done()
    r.done()
    if not backends:
        raise ConfigError("expected at least one backend", field="backends")
    return WeightedSplitConfig(backends=tuple(backends))
