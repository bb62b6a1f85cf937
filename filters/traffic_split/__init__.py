"""``weighted-split``: pick the backend cluster by weight (Gateway API backendRefs)."""

from plait.sdk import FilterSpec

from ._config import MAX_WEIGHT, SplitBackend, WeightedSplitConfig, parse_weighted_split
from ._filter import NO_BACKEND, WeightedSplit

__all__ = [
    "MAX_WEIGHT",
    "NO_BACKEND",
    "WEIGHTED_SPLIT",
    "SplitBackend",
    "WeightedSplit",
    "WeightedSplitConfig",
    "parse_weighted_split",
]

WEIGHTED_SPLIT = FilterSpec(
    name="weighted-split",
    make=WeightedSplit,
    parse_config=parse_weighted_split,
    description="choose the backend cluster by weight and record it in ctx.cluster",
    stream_independent=True,
)
