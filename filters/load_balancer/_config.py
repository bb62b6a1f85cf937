"""Config of ``load-balancer``: the algorithm per cluster.

Built by the translator from each backend's ``BackendTrafficPolicy.loadBalancer``::

    {clusters: {"svc.ns:80": {type: LeastRequest}},
                "other.ns:80": {type: RingHash, header: x-user}}}

``type``: ``LeastRequest`` (P2C with peak-EWMA latency, the default), ``RoundRobin``
(smooth weighted) or ``RingHash`` (consistent, on ``header``). A cluster not listed
is left to the core's own pick (smooth weighted round robin).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError

__all__ = ["BalancerConfig", "LoadBalancerConfig", "parse_load_balancer"]

TYPES = ("LeastRequest", "RoundRobin", "RingHash")


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerConfig:
    type: str = "LeastRequest"
    header: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancerConfig:
    clusters: Mapping[str, BalancerConfig] = field(default_factory=dict)


def parse_load_balancer(raw: Mapping[str, Any]) -> LoadBalancerConfig:
    r = ConfigReader(raw)
    clusters = r.value("clusters", None) or {}
    if not isinstance(clusters, Mapping):
        raise ConfigError("expected a mapping of cluster → settings", field="clusters")
    out: dict[str, BalancerConfig] = {}
    for name, c in clusters.items():
        b = ConfigReader(c, f"clusters.{name}")
        lb_type = b.text("type", "LeastRequest")
        if lb_type not in TYPES:
            raise ConfigError(
                f"expected one of {', '.join(TYPES)}, got {lb_type!r}", field=b.at("type")
            )
        header = b.value("header", None)
        if header is not None and not isinstance(header, str):
            raise ConfigError(f"expected a header name, got {header!r}", field=b.at("header"))
        if lb_type == "RingHash" and header is None:
            raise ConfigError("expected a header name for RingHash", field=b.at("header"))
        b.done()
        out[str(name)] = BalancerConfig(type=lb_type, header=header.lower() if header else None)
    r.done()
    return LoadBalancerConfig(clusters=out)
