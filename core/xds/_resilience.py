"""Resilience config on the xDS wire: a rule's ``retry`` and a cluster's ``policy``.

Theory of operation: one source of truth. What travels is plait's own form, the YAML a user
writes: the HTTPRoute rule's ``retry`` stanza (GEP-1731 fields + ``retry.plait``) in the
Route's facts under ``retry``, and the ``BackendTrafficPolicy`` spec (minus ``targetRefs``)
with the policy's name in the Cluster's facts under ``policy: {name, spec}``. The sidecar
parses it with the very parsers that read YAML (``parse_retry``, ``parse_traffic_policy``),
so a value the YAML could not hold cannot arrive either, and the errors name the field.

The encoder builds that form from the parsed value (:func:`retry_facts`,
:func:`policy_facts`) and parses it back to check that it gives the same value, so a
``MeshConfig`` that plait's YAML could not have produced is refused on the control plane
rather than silently changed on the sidecar. Durations are GEP-2257 text chosen so that
``parse_duration`` reads back exactly the same float (:func:`duration_text`).

Where Envoy has a standard field that means the same, it is also set, *derived* from the
parsed value by the functions here, so Envoy and gRPC's proxyless clients follow it:

* Route ``retry_policy``: ``num_retries`` = ``attempts``, ``retry_on`` = the conditions
  Envoy knows by the same name (``connect-failure``, ``reset``, ``5xx``, ``gateway-error``,
  and the gRPC ones; plait's ``timeout`` has no Envoy equivalent and is left out) plus
  ``retriable-status-codes`` with ``retriable_status_codes`` = ``codes``, and
  ``retry_back_off{base_interval, max_interval}``. Only when ``attempts`` ≥ 1 (gRPC NACKs
  ``num_retries: 0``) and some condition is left (only ``timeout``: nothing to mirror).
  ``per_try_timeout`` (``timeouts.backendRequest``) as before.
* Cluster ``circuit_breakers.thresholds[0]`` (priority DEFAULT): ``max_connections``,
  ``max_pending_requests``, ``max_requests``, ``max_retries``: the same four limits with the
  same meaning (gRPC honours ``max_requests``).

The decoder derives them again from what it parsed and requires the received fields to be
exactly that, so they can never disagree with plait's form. Outlier detection, the balancer
type and the retry budget have no field here (Envoy's differ in detail, and gRPC accepts only
some ``lb_policy`` values): they travel in plait's form only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from envoy.config.cluster.v3 import circuit_breaker_pb2  # type: ignore[import-untyped]
from envoy.config.route.v3 import route_components_pb2 as rc  # type: ignore[import-untyped]
from google.protobuf import wrappers_pb2  # type: ignore[import-untyped]

from plait.core.config._fields import Fields, Loc, parse_duration
from plait.core.config._policy import TrafficPolicy, parse_traffic_policy
from plait.core.config._retry import DEFAULT_RETRY_ON, RetryPolicy, parse_retry
from plait.sdk import ConfigError

from ._convert import duration

__all__ = [
    "circuit_breakers",
    "duration_text",
    "policy_facts",
    "policy_from_facts",
    "retry_facts",
    "retry_from_facts",
    "retry_policy",
]

ENVOY_RETRY_ON: Final = frozenset({
    "connect-failure", "reset", "5xx", "gateway-error",
    "cancelled", "deadline-exceeded", "resource-exhausted", "internal", "unavailable",
})  # fmt: skip
"""plait retry conditions Envoy knows by the same name (``x-envoy-retry-on``)."""

_REPLAY_DEFAULT: Final = RetryPolicy().max_replay_bytes
_WIRE: Final = Loc("<wire>")


def duration_text(seconds: float) -> str:
    """GEP-2257 text that ``parse_duration`` reads back as exactly ``seconds``.

    Raises:
        ValueError: ``seconds`` is not a whole number of milliseconds written any such way.
    """
    total = round(seconds * 1000)
    if total < 0:
        raise ValueError(f"{seconds}s is negative")
    # The parser sums whole h/m/s (exact) and then adds ms x 0.001 (rounded): a value written
    # as "27s48371ms" is 75.37100000000001, which "1m15s371ms" does not give. So try each
    # split of the milliseconds between whole seconds and the ms group, shortest first.
    for ms in range(total % 1000, min(total, 99_999) + 1, 1000):
        text = _whole_seconds((total - ms) // 1000) + (f"{ms}ms" if ms else "")
        if parse_duration(text or "0s") == seconds:
            return text or "0s"
    raise ValueError(f"{seconds!r}s cannot be written as a duration (whole milliseconds)")


def _whole_seconds(n: int) -> str:
    h, rest = divmod(n, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


# -- the rule's retry ---------------------------------------------------------------------------


def retry_facts(retry: RetryPolicy, where: str) -> dict[str, Any]:
    """The ``retry`` stanza that parses back to ``retry``; ``ValueError`` if there is none."""
    try:
        out: dict[str, Any] = {"attempts": retry.attempts, "backoff": duration_text(retry.backoff)}
        if retry.codes:
            out["codes"] = list(retry.codes)
        plait: dict[str, Any] = {}
        if retry.retry_on != DEFAULT_RETRY_ON:
            plait["retryOn"] = list(retry.retry_on)
        if retry.retry_non_idempotent:
            plait["retryNonIdempotent"] = True
        if retry.max_replay_bytes != _REPLAY_DEFAULT:
            plait["maxReplayBytes"] = retry.max_replay_bytes
        # Without a plait block the parser derives maxBackoff from backoff; with one, it
        # defaults to max(250ms, backoff). Write it only when neither default gives it.
        implicit = 0.25 if retry.backoff <= 0.25 else retry.backoff * 10
        if plait or retry.max_backoff != implicit:
            if retry.max_backoff != max(0.25, retry.backoff):
                plait["maxBackoff"] = duration_text(retry.max_backoff)
            out["plait"] = plait
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not _same(lambda: _parse_retry(out, _WIRE), retry):
        raise ValueError(f"{where}: this retry policy has no exact YAML form")
    return out


def retry_from_facts(raw: object, loc: Loc) -> RetryPolicy:
    """``parse_retry`` over the wire form (errors located at ``loc``)."""
    return _parse_retry(raw, loc)


def _parse_retry(raw: object, loc: Loc) -> RetryPolicy:
    return parse_retry(Fields(raw, loc))


def retry_policy(retry: RetryPolicy | None, per_try: float | None) -> Any:
    """The standard Route ``retry_policy`` for a rule, or ``None`` when it would be empty."""
    out = rc.RetryPolicy()
    if per_try is not None:
        out.per_try_timeout.CopyFrom(duration(per_try))
    on = [c for c in retry.retry_on if c in ENVOY_RETRY_ON] if retry is not None else []
    if retry is not None and retry.codes:
        on.append("retriable-status-codes")
    if retry is not None and retry.attempts > 0 and on:  # else Envoy/gRPC would retry nothing
        out.num_retries.CopyFrom(wrappers_pb2.UInt32Value(value=retry.attempts))
        out.retry_on = ",".join(on)
        out.retriable_status_codes.extend(retry.codes)
        out.retry_back_off.base_interval.CopyFrom(duration(retry.backoff))
        out.retry_back_off.max_interval.CopyFrom(duration(retry.max_backoff))
    return out if out.ListFields() else None


# -- the cluster's BackendTrafficPolicy ---------------------------------------------------------


def policy_facts(policy: TrafficPolicy, where: str) -> dict[str, Any]:
    """``{name, spec}``: the spec parses back to ``policy``; ``ValueError`` if it cannot."""
    try:
        spec = _policy_spec(policy)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    out = {"name": policy.name, "spec": spec}
    if not _same(lambda: _parse_policy(out, _WIRE), policy):
        raise ValueError(f"{where}: BackendTrafficPolicy {policy.name} has no exact YAML form")
    return out


def policy_from_facts(raw: object, loc: Loc) -> TrafficPolicy:
    """``parse_traffic_policy`` over the wire form ``{name, spec}`` (errors at ``loc``)."""
    return _parse_policy(raw, loc)


def _same(parse: Callable[[], object], want: object) -> bool:
    try:
        return parse() == want
    except ConfigError:
        return False


def _parse_policy(raw: object, loc: Loc) -> TrafficPolicy:
    f = Fields(raw, loc)
    name = f.text("name")
    spec = f.sub("spec", required=True)
    assert spec is not None
    f.done()
    return parse_traffic_policy(name, spec)


def _policy_spec(p: TrafficPolicy) -> dict[str, Any]:
    rc_, lim, o, lb = p.retry_constraint, p.limits, p.outlier, p.load_balancer
    outlier: dict[str, Any] = {
        "consecutive5xx": o.consecutive_5xx or 0,
        "consecutiveGatewayErrors": o.consecutive_gateway_errors or 0,
        "interval": duration_text(o.interval),
        "baseEjectionTime": duration_text(o.base_ejection_time),
        "maxEjectionTime": duration_text(o.max_ejection_time),
        "maxEjectionPercent": o.max_ejection_percent,
        "successRate": {
            "minimumHosts": o.success_rate_minimum_hosts,
            "requestVolume": o.success_rate_request_volume,
            "stdevFactor": round(o.success_rate_stdev_factor * 1000),
        },
    }
    if o.failure_percentage_threshold is not None:
        outlier["failurePercentage"] = {
            "threshold": o.failure_percentage_threshold,
            "minimumHosts": o.failure_percentage_minimum_hosts,
            "requestVolume": o.failure_percentage_request_volume,
        }
    balancer: dict[str, Any] = {"type": lb.type}
    if lb.hash_header is not None:
        balancer["ringHash"] = {"header": lb.hash_header}
    spec: dict[str, Any] = {
        "retryConstraint": {
            "budget": {
                "percent": rc_.budget_percent,
                "interval": duration_text(rc_.budget_interval),
            },
            "minRetryRate": {
                "count": rc_.min_retry_count,
                "interval": duration_text(rc_.min_retry_interval),
            },
        },
        "circuitBreaker": {
            "maxConnections": lim.max_connections,
            "maxPendingRequests": lim.max_pending_requests,
            "maxRequests": lim.max_requests,
            "maxRetries": lim.max_retries,
        },
        "outlierDetection": outlier,
        "loadBalancer": balancer,
    }
    timeouts = {
        key: duration_text(value)
        for key, value in (
            ("connect", p.connect_timeout),
            ("idle", p.idle_timeout),
            ("streamIdle", p.stream_idle_timeout),
        )
        if value is not None
    }
    if timeouts:
        spec["timeouts"] = timeouts
    if p.tls_mode is not None:
        spec["tls"] = {"mode": p.tls_mode}
    if p.h2_upgrade is not None:
        spec["h2UpgradePolicy"] = p.h2_upgrade
    return spec


def circuit_breakers(policy: TrafficPolicy | None) -> Any:
    """The standard Cluster ``circuit_breakers`` for ``policy`` (``None`` without one)."""
    if policy is None:
        return None
    lim = policy.limits
    out = circuit_breaker_pb2.CircuitBreakers()
    t = out.thresholds.add()  # priority DEFAULT
    for name, value in (
        ("max_connections", lim.max_connections),
        ("max_pending_requests", lim.max_pending_requests),
        ("max_requests", lim.max_requests),
        ("max_retries", lim.max_retries),
    ):
        getattr(t, name).CopyFrom(wrappers_pb2.UInt32Value(value=value))
    return out
