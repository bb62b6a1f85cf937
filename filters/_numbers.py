"""Number fields shared by the resilience filters' configs (seconds, ratios)."""

from __future__ import annotations

from plait.sdk import ConfigError

from ._validate import ConfigReader

__all__ = ["number"]


def number(r: ConfigReader, key: str, default: float, *, lo: float, hi: float) -> float:
    """An int or float ``lo..hi`` (seconds, for durations: the translator writes seconds)."""
    value = r.value(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"expected a number {lo:g}..{hi:g}, got {value!r}", field=r.at(key))
    return float(value)
