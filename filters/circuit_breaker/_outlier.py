"""Outlier detection: eject endpoints that fail, re-admit them through a probe.

Theory of operation
-------------------
Each endpoint of a cluster is in one of three states::

    HEALTHY ──(detector fires)──► EJECTED ──(ejection time over)──► PROBING
       ▲                                                               │
       └──────────────(the probe succeeds)─────────────────────────────┤
                         EJECTED ◄──(the probe fails: times + 1)───────┘

Detectors (Envoy's): ``consecutive5xx`` (5xx responses, and connect failures,
resets and timeouts, which count as 5xx), ``consecutiveGatewayErrors``
(502/503/504 and the same local failures), and, once per ``interval``,
success-rate (an endpoint with enough requests whose success rate is below
mean - k*sigma of such endpoints, when enough of them qualify) and
failure-percentage (failure share ≥ threshold).

An ejection lasts ``baseEjectionTime x times ejected``, at most
``maxEjectionTime``. At most ``maxEjectionPercent`` of the endpoints are out at
once (always at least one may be, as in Envoy). When an ejection ends the
endpoint is not trusted at once: the next request is sent to it as a probe
(Linkerd's probation: one real request); until the probe's outcome is known it
gets nothing else. Everything runs on request arrival and completion, with no
timer task; interval detectors run when the first request after an interval
boundary arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import BreakerConfig

__all__ = ["EndpointHealth", "Outliers"]

HEALTHY, EJECTED, PROBING = "healthy", "ejected", "probing"
_NONE: frozenset[str] = frozenset()


@dataclass(slots=True)
class EndpointHealth:
    state: str = HEALTHY
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    times_ejected: int = 0
    until: float = 0.0
    probe_in_flight: bool = False
    ok: int = 0
    failed: int = 0
    """Outcomes in the current interval (success-rate / failure-percentage)."""


class Outliers:
    """The outlier state of one cluster's endpoints."""

    __slots__ = ("events", "hosts", "next_sweep", "out")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.hosts = {k: EndpointHealth() for k in keys}
        self.next_sweep = 0.0
        self.out = 0
        """How many endpoints are not healthy (ejected or probing): 0 is the fast path."""
        self.events: list[str] = []
        """Counter names of what happened (``ejection``, ...); the caller drains it."""

    def excluded(self, now: float, config: BreakerConfig) -> tuple[frozenset[str], str | None]:
        """Endpoints to avoid now, and the endpoint to probe (if one is due)."""
        if now >= self.next_sweep:
            self._sweep(now, config)
        if not self.out:
            return _NONE, None
        out: set[str] = set()
        probe = None
        for key, h in self.hosts.items():
            if h.state == EJECTED and now >= h.until:
                h.state, h.probe_in_flight = PROBING, False
            if h.state == EJECTED or (h.state == PROBING and h.probe_in_flight):
                out.add(key)
            elif h.state == PROBING and probe is None:
                probe = key
        return frozenset(out), probe

    def start_probe(self, key: str) -> None:
        self.hosts[key].probe_in_flight = True

    def record(self, key: str, status: int, now: float, config: BreakerConfig) -> None:
        """The outcome of one try to ``key``: an HTTP status, or 0 for a local failure
        (connect failure, reset, timeout)."""
        h = self.hosts.get(key)
        if h is None:
            return
        bad = status == 0 or status >= 500
        gateway = status in (0, 502, 503, 504)
        if not bad:
            h.ok += 1
            h.consecutive_5xx = h.consecutive_gateway = 0
            if h.state == PROBING:
                h.state, h.probe_in_flight = HEALTHY, False
                self.out -= 1
                self.events.append("readmission")
            return
        h.failed += 1
        h.consecutive_5xx += 1
        h.consecutive_gateway = h.consecutive_gateway + 1 if gateway else 0
        if h.state == PROBING:
            self._eject(key, h, now, config, force=True)
        elif h.state == HEALTHY and (
            (config.consecutive_5xx and h.consecutive_5xx >= config.consecutive_5xx)
            or (
                config.consecutive_gateway_errors
                and h.consecutive_gateway >= config.consecutive_gateway_errors
            )
        ):
            self._eject(key, h, now, config)

    def _eject(
        self, key: str, h: EndpointHealth, now: float, config: BreakerConfig, force: bool = False
    ) -> None:
        if not force and not self._may_eject(config):
            self.events.append("ejection_skipped_max_percent")
            return
        h.times_ejected += 1
        if h.state == HEALTHY:
            self.out += 1
        h.state, h.probe_in_flight = EJECTED, False
        h.until = now + min(config.base_ejection_time * h.times_ejected, config.max_ejection_time)
        h.consecutive_5xx = h.consecutive_gateway = 0
        self.events.append("ejection")

    def _may_eject(self, config: BreakerConfig) -> bool:
        n = len(self.hosts)
        if config.max_ejection_percent == 0:
            return False
        allowed = max(1, n * config.max_ejection_percent // 100)
        return self.out < allowed

    def _sweep(self, now: float, config: BreakerConfig) -> None:
        """The interval detectors over the last interval's outcomes, then a new interval."""
        self.next_sweep = now + config.interval
        healthy = [(k, h) for k, h in self.hosts.items() if h.state == HEALTHY]
        if config.success_rate is not None:
            hosts, volume, factor = config.success_rate
            rated = [
                (k, h, h.ok / (h.ok + h.failed)) for k, h in healthy if h.ok + h.failed >= volume
            ]
            if len(rated) >= hosts:
                rates = [r for _, _, r in rated]
                mean = sum(rates) / len(rates)
                sigma = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
                for k, h, r in rated:
                    if r < mean - factor * sigma and h.state == HEALTHY:
                        self._eject(k, h, now, config)
        if config.failure_percentage is not None:
            threshold, hosts, volume = config.failure_percentage
            rated = [
                (k, h, h.failed / (h.ok + h.failed))
                for k, h in healthy
                if h.ok + h.failed >= volume
            ]
            if len(rated) >= hosts:
                for k, h, share in rated:
                    if share * 100 >= threshold and h.state == HEALTHY:
                        self._eject(k, h, now, config)
        for h in self.hosts.values():
            h.ok = h.failed = 0

    def describe(self, now: float) -> dict[str, object]:
        return {
            key: {
                "state": h.state,
                "timesEjected": h.times_ejected,
                "ejectedForS": round(max(h.until - now, 0.0), 3) if h.state == EJECTED else 0,
                "consecutive5xx": h.consecutive_5xx,
            }
            for key, h in self.hosts.items()
        }
