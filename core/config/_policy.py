"""Resilience config: the ``BackendTrafficPolicy`` kind (the rule's ``retry`` is in ``_retry.py``).

``BackendTrafficPolicy`` (apiVersion ``plait.dev/v1alpha1``; the Gateway API
experimental ``gateway.networking.x-k8s.io/v1alpha1`` is accepted too, GEP-3388)
attaches to Services through ``targetRefs`` and holds what is per destination:
the retry budget (``retryConstraint``, GEP-3388 field names), circuit-breaker
limits, outlier detection, the load balancer, connect/idle timeouts, ``tls.mode``,
which overrides auto mTLS for the destination (``ISTIO_MUTUAL``: always mesh mTLS,
``DISABLE``: always plaintext; absent: auto, see ``core/upstream/_tls.py``), and
``h2UpgradePolicy`` (Istio's name and values), which decides whether the HTTP/1.1
requests to it travel as HTTP/2 (``UPGRADE``: to every endpoint; ``DO_NOT_UPGRADE``:
never; ``DEFAULT`` or absent: to the endpoints reached over mesh mTLS, see
``core/upstream/_manager.py``).
The rule's ``retry`` (GEP-1731: ``codes``, ``attempts``, ``backoff``) holds what
is per route; plait's own additions live under ``retry.plait`` so they cannot
collide with future Gateway API fields.

Defaults follow what the established meshes use: budget 20% over 10 s with a floor of 10
retries per 1 s (Linkerd, GEP-3388); backoff 25 ms → 250 ms with full jitter
(Envoy); limits 1024 connections / pending / requests and 3 concurrent retries
(Envoy); outlier detection 5 consecutive 5xx, 10 s interval, 30 s base ejection
(x times ejected, at most 300 s), at most 10% ejected but always at least one
(Envoy); success-rate ejection at mean - 1.9sigma over hosts with ≥ 100 requests,
when ≥ 5 hosts qualify (Envoy); failure-percentage off unless configured; load
balancer P2C least-request with peak-EWMA latency (Linkerd).

Everything here is frozen; ``_resilience.py`` turns it into filter entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._fields import Fields, Loc
from ._resources import LABEL, LABEL_HINT, Meta

__all__ = [
    "CircuitBreakerLimits",
    "LoadBalancerPolicy",
    "OutlierDetection",
    "PolicyRes",
    "RetryConstraint",
    "TrafficPolicy",
    "parse_backend_traffic_policy",
    "parse_traffic_policy",
]

LB_TYPES = ("LeastRequest", "RoundRobin", "RingHash")
TLS_MODES = ("ISTIO_MUTUAL", "DISABLE")
H2_UPGRADE_POLICIES = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")
_BIG = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConstraint:
    budget_percent: int = 20
    budget_interval: float = 10.0
    min_retry_count: int = 10
    min_retry_interval: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerLimits:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetection:
    consecutive_5xx: int | None = 5
    consecutive_gateway_errors: int | None = None
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: float = 1.9
    failure_percentage_threshold: int | None = None
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancerPolicy:
    type: str = "LeastRequest"
    hash_header: str | None = None
    """``RingHash``: the request header hashed to choose the endpoint."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficPolicy:
    """What a ``BackendTrafficPolicy`` sets for the clusters of its target Services."""

    name: str
    """``<namespace>/<name>`` of the policy, for ``/config_dump``."""
    retry_constraint: RetryConstraint = RetryConstraint()
    limits: CircuitBreakerLimits = CircuitBreakerLimits()
    outlier: OutlierDetection = OutlierDetection()
    load_balancer: LoadBalancerPolicy = LoadBalancerPolicy()
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    stream_idle_timeout: float | None = None
    tls_mode: str | None = None
    """``tls.mode``: ``ISTIO_MUTUAL`` or ``DISABLE``; ``None`` is auto mTLS."""
    h2_upgrade: str | None = None
    """``h2UpgradePolicy``: ``UPGRADE`` or ``DO_NOT_UPGRADE``; ``None`` (``DEFAULT``) upgrades
    over mesh mTLS only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRes:
    meta: Meta
    targets: tuple[tuple[str, str, Loc], ...]
    """``(namespace, service name, location)`` of each ``targetRefs`` entry."""
    policy: TrafficPolicy


# -- BackendTrafficPolicy ----------------------------------------------------------------------


def parse_backend_traffic_policy(meta: Meta, spec: Fields) -> PolicyRes:
    targets = []
    for t in spec.maps("targetRefs", max_items=16):
        if t.has("group") and t.raw["group"] not in ("", "core"):
            raise t.at("group").expected(
                '"" or core (Services are in the core group)', t.raw["group"]
            )
        t.text("kind", "Service", choices=("Service",))
        name = t.text("name", pattern=LABEL, what=LABEL_HINT)
        ns = t.text("namespace", meta.namespace, pattern=LABEL, what=LABEL_HINT)
        t.done()
        targets.append((ns, name, t.loc))
    if not targets:
        raise spec.at("targetRefs").error("expected at least one targetRef (a Service)")
    policy = parse_traffic_policy(f"{meta.namespace}/{meta.name}", spec)
    return PolicyRes(meta=meta, targets=tuple(targets), policy=policy)


def parse_traffic_policy(name: str, spec: Fields) -> TrafficPolicy:
    """The policy part of a ``BackendTrafficPolicy`` spec (everything but ``targetRefs``,
    which the caller has read). xDS carries this form and the sidecar parses it here too."""
    policy = TrafficPolicy(
        name=name,
        retry_constraint=_constraint(spec.sub("retryConstraint")),
        limits=_limits(spec.sub("circuitBreaker")),
        outlier=_outlier(spec.sub("outlierDetection")),
        load_balancer=_balancer(spec.sub("loadBalancer")),
        **_timeouts(spec.sub("timeouts")),
        tls_mode=_tls(spec.sub("tls")),
        h2_upgrade=_h2_upgrade(spec),
    )
    spec.done()
    return policy


def _constraint(f: Fields | None) -> RetryConstraint:
    if f is None:
        return RetryConstraint()
    d = RetryConstraint()
    percent, interval = d.budget_percent, d.budget_interval
    if (b := f.sub("budget")) is not None:
        percent = b.integer("percent", percent, lo=0, hi=100)
        interval = b.duration("interval", interval)
        if not 1.0 <= interval <= 3600.0:
            raise b.at("interval").expected("a duration from 1s to 1h", b.raw["interval"])
        b.done()
    count, per = d.min_retry_count, d.min_retry_interval
    if (m := f.sub("minRetryRate")) is not None:
        count = m.integer("count", count, lo=0, hi=_BIG)
        per = m.duration("interval", per)
        m.done()
    f.done()
    return RetryConstraint(
        budget_percent=percent, budget_interval=interval, min_retry_count=count,
        min_retry_interval=per,
    )  # fmt: skip


def _limits(f: Fields | None) -> CircuitBreakerLimits:
    if f is None:
        return CircuitBreakerLimits()
    d = CircuitBreakerLimits()
    out = CircuitBreakerLimits(
        max_connections=f.integer("maxConnections", d.max_connections, lo=1, hi=_BIG),
        max_pending_requests=f.integer("maxPendingRequests", d.max_pending_requests, lo=0, hi=_BIG),
        max_requests=f.integer("maxRequests", d.max_requests, lo=1, hi=_BIG),
        max_retries=f.integer("maxRetries", d.max_retries, lo=0, hi=_BIG),
    )
    f.done()
    return out


def _outlier(f: Fields | None) -> OutlierDetection:
    if f is None:
        return OutlierDetection()
    d = OutlierDetection()
    c5 = f.integer("consecutive5xx", d.consecutive_5xx or 0, lo=0, hi=_BIG)
    cg = f.integer("consecutiveGatewayErrors", 0, lo=0, hi=_BIG)
    base = f.duration("baseEjectionTime", d.base_ejection_time)
    max_time = f.duration("maxEjectionTime", max(d.max_ejection_time, base))
    if max_time < base:
        raise f.at("maxEjectionTime").error(f"expected at least baseEjectionTime ({base}s)")
    sr_hosts, sr_volume, sr_factor = (
        d.success_rate_minimum_hosts,
        d.success_rate_request_volume,
        d.success_rate_stdev_factor,
    )
    if (sr := f.sub("successRate")) is not None:
        sr_hosts = sr.integer("minimumHosts", sr_hosts, lo=1, hi=_BIG)
        sr_volume = sr.integer("requestVolume", sr_volume, lo=1, hi=_BIG)
        factor_ms = sr.integer("stdevFactor", int(sr_factor * 1000), lo=0, hi=_BIG)
        sr_factor = factor_ms / 1000  # Envoy: 1900 means mean - 1.9 sigma
        sr.done()
    fp_threshold, fp_hosts, fp_volume = None, d.failure_percentage_minimum_hosts, 50
    if (fp := f.sub("failurePercentage")) is not None:
        fp_threshold = fp.integer("threshold", 85, lo=0, hi=100)
        fp_hosts = fp.integer("minimumHosts", fp_hosts, lo=1, hi=_BIG)
        fp_volume = fp.integer("requestVolume", fp_volume, lo=1, hi=_BIG)
        fp.done()
    out = OutlierDetection(
        consecutive_5xx=c5 or None,
        consecutive_gateway_errors=cg or None,
        interval=f.duration("interval", d.interval),
        base_ejection_time=base,
        max_ejection_time=max_time,
        max_ejection_percent=f.integer("maxEjectionPercent", d.max_ejection_percent, lo=0, hi=100),
        success_rate_minimum_hosts=sr_hosts,
        success_rate_request_volume=sr_volume,
        success_rate_stdev_factor=sr_factor,
        failure_percentage_threshold=fp_threshold,
        failure_percentage_minimum_hosts=fp_hosts,
        failure_percentage_request_volume=fp_volume,
    )
    f.done()
    return out


def _balancer(f: Fields | None) -> LoadBalancerPolicy:
    if f is None:
        return LoadBalancerPolicy()
    lb_type = f.text("type", "LeastRequest", choices=LB_TYPES)
    header = None
    if (r := f.sub("ringHash")) is not None:
        if lb_type != "RingHash":
            raise f.at("ringHash").error("only with type: RingHash")
        header = r.text("header").lower()
        r.done()
    if lb_type == "RingHash" and header is None:
        raise f.loc.error("type RingHash needs ringHash.header (the header to hash)")
    f.done()
    return LoadBalancerPolicy(type=lb_type, hash_header=header)


def _timeouts(f: Fields | None) -> dict[str, float | None]:
    if f is None:
        return {}
    out: dict[str, float | None] = {
        "connect_timeout": f.duration("connect", 10.0),
        "idle_timeout": f.duration("idle", 3600.0),
        "stream_idle_timeout": f.opt_duration("streamIdle"),
    }
    f.done()
    return out


def _h2_upgrade(spec: Fields) -> str | None:
    policy = spec.text("h2UpgradePolicy", "DEFAULT", choices=H2_UPGRADE_POLICIES)
    return None if policy == "DEFAULT" else policy


def _tls(f: Fields | None) -> str | None:
    if f is None:
        return None
    mode = f.text("mode", choices=TLS_MODES)
    f.done()
    return mode
