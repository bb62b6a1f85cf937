"""Resilience config → filter entries: the translator's half of ``_policy.py``.

Retries, circuit breaking and load balancing are ``around_upstream`` layers
(docs/resilience.md), registered filters like any other; the core never calls
them by name. This module is the only place that maps config onto their
registry types, the way the translator maps ``backendRefs`` onto
``weighted-split``. Per rule, after the split filter, it appends (outermost
first, which is the order ``Chain.compose`` nests them):

1. ``retry`` when the rule has ``retry``: the overall deadline and the retry
   budget must wrap every attempt, so it is outermost;
2. ``circuit-breaker`` when a backend has a ``BackendTrafficPolicy``: limits
   and outlier ejection apply to each attempt (a retry counts as a request);
3. ``load-balancer`` likewise: it picks the endpoint for each attempt, after
   the breaker has excluded ejected endpoints.

The per-try timeout (``timeouts.backendRequest``) is applied by the core
around the innermost call, inside all three. Configs are built as the plain
mappings the filters' parsers take (durations in seconds), so they are
validated by the same code as a hand-written filter config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from plait.sdk import FilterSpec

from ._fields import Loc
from ._filter_config import parse_filter_config
from ._model import Cluster, FilterEntry, Timeouts, WeightedBackend
from ._policy import PolicyRes, TrafficPolicy
from ._retry import RetryPolicy

__all__ = ["CIRCUIT_BREAKER", "LOAD_BALANCER", "RETRY", "apply_policies", "resilience_entries"]

RETRY = "retry"
CIRCUIT_BREAKER = "circuit-breaker"
LOAD_BALANCER = "load-balancer"


class _ServiceLookup(Protocol):
    def __call__(self, name: str, namespace: str, loc: Loc) -> Any: ...


def apply_policies(
    policies: tuple[PolicyRes, ...], service: _ServiceLookup, clusters: dict[str, Cluster]
) -> None:
    """Attach each policy to the clusters of its target Services (one policy per Service)."""
    owner: dict[tuple[str, str], PolicyRes] = {}
    for res in policies:
        for ns, name, loc in res.targets:
            service(name, ns, loc)  # must exist
            if (first := owner.get((ns, name))) is not None and first is not res:
                raise loc.error(
                    f"Service {ns}/{name} already has BackendTrafficPolicy {first.policy.name} "
                    f"({first.meta.loc.file_line}); one policy per Service"
                )
            owner[(ns, name)] = res
    for cname, cluster in list(clusters.items()):
        svc, _, _port = cname.rpartition(":")
        name, _, ns = svc.partition(".")
        found = owner.get((ns, name))
        if found is not None:
            clusters[cname] = _with_policy(cluster, found.policy)


def _with_policy(cluster: Cluster, policy: TrafficPolicy) -> Cluster:
    t = cluster.timeouts
    timeouts = Timeouts(
        connect=policy.connect_timeout or t.connect,
        idle=policy.idle_timeout or t.idle,
        stream_idle=policy.stream_idle_timeout,
    )
    return replace(cluster, policy=policy, timeouts=timeouts)


def resilience_entries(
    filter_types: Mapping[str, FilterSpec[Any]],
    clusters: Mapping[str, Cluster],
    backends: tuple[WeightedBackend, ...],
    retry: RetryPolicy | None,
    loc: Loc,
) -> tuple[FilterEntry, ...]:
    """The layers a rule with ``backends`` and ``retry`` needs (none when unconfigured)."""
    policies = {
        b.cluster: p for b in backends if (p := _policy(clusters.get(b.cluster))) is not None
    }
    wanted: list[tuple[str, dict[str, Any]]] = []
    if retry is not None:
        wanted.append((RETRY, _retry_config(retry, policies)))
    if policies:
        wanted.append(
            (CIRCUIT_BREAKER, {"clusters": {c: _breaker(p) for c, p in policies.items()}})
        )
        wanted.append((LOAD_BALANCER, {"clusters": {c: _lb(p) for c, p in policies.items()}}))
    out = []
    for name, raw in wanted:
        spec = filter_types.get(name)
        if spec is None:
            raise loc.error(
                f"filter type {name!r} is not registered (are plait's built-in filters installed?)"
            )
        config = parse_filter_config(spec, raw, loc)
        out.append(FilterEntry(name=name, spec=spec, config=config, type=name, raw_config=raw))
    return tuple(out)


def _policy(cluster: Cluster | None) -> TrafficPolicy | None:
    return cluster.policy if cluster is not None else None


def _retry_config(retry: RetryPolicy, policies: Mapping[str, TrafficPolicy]) -> dict[str, Any]:
    budgets = {}
    for cluster, p in policies.items():
        rc = p.retry_constraint
        budgets[cluster] = {
            "percent": rc.budget_percent,
            "interval": rc.budget_interval,
            "minRetryCount": rc.min_retry_count,
            "minRetryInterval": rc.min_retry_interval,
            "maxActiveRetries": p.limits.max_retries,
        }
    return {
        "attempts": retry.attempts,
        "codes": list(retry.codes),
        "retryOn": list(retry.retry_on),
        "backoff": retry.backoff,
        "maxBackoff": retry.max_backoff,
        "retryNonIdempotent": retry.retry_non_idempotent,
        "maxReplayBytes": retry.max_replay_bytes,
        "budgets": budgets,
    }


def _breaker(p: TrafficPolicy) -> dict[str, Any]:
    o, lim = p.outlier, p.limits
    return {
        "maxConnections": lim.max_connections,
        "maxPendingRequests": lim.max_pending_requests,
        "maxRequests": lim.max_requests,
        "consecutive5xx": o.consecutive_5xx or 0,
        "consecutiveGatewayErrors": o.consecutive_gateway_errors or 0,
        "interval": o.interval,
        "baseEjectionTime": o.base_ejection_time,
        "maxEjectionTime": o.max_ejection_time,
        "maxEjectionPercent": o.max_ejection_percent,
        "successRate": {
            "minimumHosts": o.success_rate_minimum_hosts,
            "requestVolume": o.success_rate_request_volume,
            "stdevFactor": o.success_rate_stdev_factor,
        },
        "failurePercentage": None
        if o.failure_percentage_threshold is None
        else {
            "threshold": o.failure_percentage_threshold,
            "minimumHosts": o.failure_percentage_minimum_hosts,
            "requestVolume": o.failure_percentage_request_volume,
        },
    }


def _lb(p: TrafficPolicy) -> dict[str, Any]:
    return {"type": p.load_balancer.type, "header": p.load_balancer.hash_header}
