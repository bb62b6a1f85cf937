"""Config of ``circuit-breaker``: limits and outlier detection per cluster.

Built by the translator from each backend's ``BackendTrafficPolicy``
(``circuitBreaker`` and ``outlierDetection``; durations in seconds)::

    {clusters: {"svc.ns:80": {maxConnections: 1024, maxPendingRequests: 1024,
        maxRequests: 1024, consecutive5xx: 5, consecutiveGatewayErrors: 0,
        interval: 10, baseEjectionTime: 30, maxEjectionTime: 300,
        maxEjectionPercent: 10,
        successRate: {minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9},
        failurePercentage: null}}}

A cluster not listed passes through untouched. ``0`` disables a consecutive-error
detector; ``successRate: null`` / ``failurePercentage: null`` disable those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._numbers import number
from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError

__all__ = ["BreakerConfig", "CircuitBreakerConfig", "parse_circuit_breaker"]

_BIG = 1 << 30


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    success_rate: tuple[int, int, float] | None = (5, 100, 1.9)
    """``(minimum hosts, request volume, stdev factor)``, or ``None`` (off)."""
    failure_percentage: tuple[int, int, int] | None = None
    """``(threshold %, minimum hosts, request volume)``, or ``None`` (off)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    clusters: Mapping[str, BreakerConfig] = field(default_factory=dict)


def parse_circuit_breaker(raw: Mapping[str, Any]) -> CircuitBreakerConfig:
    r = ConfigReader(raw)
    clusters = r.value("clusters", None) or {}
    if not isinstance(clusters, Mapping):
        raise ConfigError("expected a mapping of cluster → settings", field="clusters")
    out = {str(name): _cluster(ConfigReader(c, f"clusters.{name}")) for name, c in clusters.items()}
    r.done()
    return CircuitBreakerConfig(clusters=out)


def _cluster(c: ConfigReader) -> BreakerConfig:
    base = number(c, "baseEjectionTime", 30, lo=0.001, hi=86400)
    max_time = number(c, "maxEjectionTime", max(300, base), lo=0.001, hi=86400)
    if max_time < base:
        raise ConfigError(
            f"expected at least baseEjectionTime ({base:g})", field=c.at("maxEjectionTime")
        )
    out = BreakerConfig(
        max_connections=c.integer("maxConnections", 1024, lo=1, hi=_BIG),
        max_pending_requests=c.integer("maxPendingRequests", 1024, lo=0, hi=_BIG),
        max_requests=c.integer("maxRequests", 1024, lo=1, hi=_BIG),
        consecutive_5xx=c.integer("consecutive5xx", 5, lo=0, hi=_BIG),
        consecutive_gateway_errors=c.integer("consecutiveGatewayErrors", 0, lo=0, hi=_BIG),
        interval=number(c, "interval", 10, lo=0.001, hi=86400),
        base_ejection_time=base,
        max_ejection_time=max_time,
        max_ejection_percent=c.integer("maxEjectionPercent", 10, lo=0, hi=100),
        success_rate=_success_rate(c),
        failure_percentage=_failure_percentage(c),
    )
    c.done()
    return out


def _success_rate(c: ConfigReader) -> tuple[int, int, float] | None:
    raw = c.value("successRate", {})
    if raw is None:
        return None
    s = ConfigReader(raw, c.at("successRate"))
    out = (
        s.integer("minimumHosts", 5, lo=1, hi=_BIG),
        s.integer("requestVolume", 100, lo=1, hi=_BIG),
        number(s, "stdevFactor", 1.9, lo=0, hi=1000),
    )
    s.done()
    return out


def _failure_percentage(c: ConfigReader) -> tuple[int, int, int] | None:
    raw = c.value("failurePercentage", None)
    if raw is None:
        return None
    f = ConfigReader(raw, c.at("failurePercentage"))
    out = (
        f.integer("threshold", 85, lo=0, hi=100),
        f.integer("minimumHosts", 5, lo=1, hi=_BIG),
        f.integer("requestVolume", 50, lo=1, hi=_BIG),
    )
    f.done()
    return out
