"""Upstream pools by endpoint, kept across config swaps; per-cluster endpoint picking.

Pools are keyed by ``(protocol family, address, port)`` and survive snapshot
swaps, so a reload never drops warm keep-alive connections. After a swap,
pools of endpoints no snapshot names any more are closed (:meth:`Upstreams.prune`).
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Protocol

from plait.sdk import NoHealthyUpstream

from .._streams import UpstreamStream
from ..config._model import Cluster, Endpoint
from ._h1 import H1Pool

__all__ = ["ClusterRuntime", "Pool", "Upstreams"]


class Pool(Protocol):
    endpoint: Endpoint
    key: str
    """``address:port``, computed once."""

    async def open_stream(self, *, fresh: bool = False) -> UpstreamStream: ...

    def take(self) -> UpstreamStream | None: ...

    def close(self) -> None: ...


class Upstreams:
    def __init__(self) -> None:
        self._pools: dict[tuple[bool, str, int], Pool] = {}

    def pool(self, cluster: Cluster, endpoint: Endpoint) -> Pool:
        h2 = cluster.protocol.upstream_h2
        key = (h2, endpoint.address, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            t = cluster.timeouts
            if h2:
                from ._h2 import H2Pool

                pool = H2Pool(endpoint, connect_timeout=t.connect, idle_timeout=t.idle)
            else:
                pool = H1Pool(
                    endpoint,
                    connect_timeout=t.connect,
                    idle_timeout=t.idle,
                    max_idle=cluster.max_idle_per_endpoint,
                )
            self._pools[key] = pool
        return pool

    def prune(self, live: Iterable[tuple[bool, str, int]]) -> None:
        keep = set(live)
        for key in [k for k in self._pools if k not in keep]:
            self._pools.pop(key).close()

    def close(self) -> None:
        self.prune(())


class ClusterRuntime:
    """A cluster's endpoints as pools, picked by smooth weighted round robin."""

    def __init__(self, cluster: Cluster, upstreams: Upstreams) -> None:
        self.cluster = cluster
        self.pools = [upstreams.pool(cluster, ep) for ep in cluster.endpoints]
        self.keys = [
            (cluster.protocol.upstream_h2, ep.address, ep.port) for ep in cluster.endpoints
        ]
        weights = [max(ep.weight, 0) for ep in cluster.endpoints]
        self._next: Callable[[], Pool] | None = None
        if not self.pools or (sum(weights) == 0 and len(set(weights)) > 1):
            return
        g = math.gcd(*weights) or 1
        weights = [w // g for w in weights]
        if len(set(weights)) <= 1:
            self._next = itertools.cycle(self.pools).__next__
        elif sum(weights) <= 1000:
            self._next = itertools.cycle(_smooth_wrr(self.pools, weights)).__next__
        else:
            self._next = _weighted_random(self.pools, weights)

    def pick(self) -> Pool:
        if self._next is None:
            raise NoHealthyUpstream(f"{self.cluster.name} has no endpoints")
        return self._next()


def _weighted_random(pools: list[Pool], weights: list[int]) -> Callable[[], Pool]:
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    rnd = random.random

    def pick() -> Pool:
        return pools[bisect_right(cumulative, rnd() * total)]

    return pick


def _smooth_wrr(pools: list[Pool], weights: list[int]) -> list[Pool]:
    """One period of nginx's smooth weighted round robin (interleaves, no bursts)."""
    total = sum(weights)
    if total == 0:
        return list(pools)
    current = [0] * len(pools)
    order: list[Pool] = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(pools)), key=current.__getitem__)
        current[best] -= total
        order.append(pools[best])
    return order
