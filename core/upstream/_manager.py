"""Upstream pools by endpoint, kept across config swaps; per-cluster endpoint picking.

Pools are keyed by ``(protocol family, address, port, tls)`` and survive snapshot
swaps, so a reload never drops warm keep-alive connections. After a swap,
pools of endpoints no snapshot names any more are closed (:meth:`Upstreams.prune`).
``tls`` is empty for a plaintext-only pool; a pool that may originate mTLS
(``_tls.plan``) is keyed by its cluster, whether mTLS is required and the SPIFFE ID
expected, so a changed identity or mode gets a new pool and the old one is closed.
Its handshakes are counted per cluster (:meth:`Upstreams.counters`).

HTTP/2 between sidecars. The HTTP/1.1 requests of an ``http`` cluster travel as HTTP/2
to an endpoint reached over mesh mTLS (:func:`upgrades`), as Linkerd does between its
proxies: the peer is a sidecar, which takes HTTP/2 by ALPN on any HTTP port and hands the
request to its app as HTTP/1.1. Many requests share one connection, and the frames of the
requests ready at once leave in one write and one TLS record, instead of one record and
one syscall per request on as many connections. Such an endpoint's pool is an
:class:`~._upgrade.UpgradePool` (an HTTP/2 pool and an HTTP/1.1 one: a peer that selects
``http/1.1`` by ALPN, the time before this sidecar has a certificate, and ``Upgrade``
requests such as WebSocket, :meth:`ClusterRuntime.pick_tunnel`, and a request without an
authority, an HTTP/1.0 one without ``Host``, which HTTP/2 peers refuse, go on HTTP/1.1). The
BackendTrafficPolicy's ``h2UpgradePolicy`` (Istio's field) overrides the choice:
``DO_NOT_UPGRADE`` keeps HTTP/1.1; ``UPGRADE`` sends every endpoint of the cluster
HTTP/2, plaintext ones too (prior-knowledge h2c: the operator says they speak it), its
``Upgrade`` requests still on HTTP/1.1.

Each cluster name also has one :class:`~plait.sdk.UpstreamCluster`: the state
``around_upstream`` layers share across streams (budgets, ejections, latency
estimates). It is kept across swaps while the cluster's endpoints are
unchanged and replaced when they change (:meth:`Upstreams.cluster_state`).
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Protocol

from plait.sdk import EndpointInfo, NoHealthyUpstream, UpstreamCluster

from ..config._model import Cluster, Endpoint
from ..config._model import Protocol as AppProtocol
from ..identity.store import CertStore
from ._h1 import H1Pool
from ._tls import Origination, plan
from ._upgrade import UpgradePool
from .stream import UpstreamStream

__all__ = ["ClusterRuntime", "Pool", "Upstreams", "pool_key", "upgrades"]

PoolKey = tuple[bool, str, int, str]


def upgrades(cluster: Cluster, endpoint: Endpoint) -> str | None:
    """How the HTTP/1.1 requests of ``cluster`` go to ``endpoint`` as HTTP/2 (see the module
    docstring): ``"mesh"`` over mTLS where the peer selects it, ``"always"`` (the policy's
    ``UPGRADE``), ``None``: they stay HTTP/1.1."""
    if cluster.protocol is not AppProtocol.HTTP:
        return None
    policy = cluster.policy.h2_upgrade if cluster.policy is not None else None
    if policy is not None:
        return "always" if policy == "UPGRADE" else None
    return "mesh" if plan(cluster, endpoint) is not None else None


def pool_key(cluster: Cluster, endpoint: Endpoint) -> PoolKey:
    tls = plan(cluster, endpoint)
    tag = "" if tls is None else f"{cluster.name} {tls[0]} {tls[1]}"
    h2 = cluster.protocol.upstream_h2 or upgrades(cluster, endpoint) is not None
    return (h2, endpoint.address, endpoint.port, tag)


class Pool(Protocol):
    endpoint: Endpoint
    key: str
    """``address:port``, computed once."""
    origin: Origination | None
    """How its connections originate mTLS (``None``: plaintext only)."""

    async def open_stream(self, *, fresh: bool = False) -> UpstreamStream: ...

    def take(self) -> UpstreamStream | None: ...

    def close(self) -> None: ...


class Upstreams:
    def __init__(self, identity: CertStore | None = None) -> None:
        self._pools: dict[PoolKey, Pool] = {}
        self._states: dict[str, UpstreamCluster] = {}
        self.identity = identity if identity is not None else CertStore()
        self.tls_counters: dict[str, dict[str, int]] = {}
        """Per cluster: outbound mTLS handshakes by result (``_tls.py``)."""

    def cluster_state(self, cluster: Cluster) -> UpstreamCluster:
        """The shared state of ``cluster``: the same object while its endpoints are unchanged."""
        endpoints = tuple(
            EndpointInfo(key=ep.key, weight=ep.weight, labels=ep.labels) for ep in cluster.endpoints
        )
        state = self._states.get(cluster.name)
        if state is None or state.endpoints != endpoints:
            state = self._states[cluster.name] = UpstreamCluster(cluster.name, endpoints)
        return state

    def states(self) -> dict[str, UpstreamCluster]:
        return dict(self._states)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per cluster: the layers' event counters and the mTLS handshake counters."""
        out = {name: dict(s.counters) for name, s in self._states.items()}
        for name, tls in self.tls_counters.items():
            out.setdefault(name, {}).update(tls)
        return out

    def prune_states(self, live: Iterable[str]) -> None:
        keep = set(live)
        for name in [n for n in self._states if n not in keep]:
            del self._states[name]
        for name in [n for n in self.tls_counters if n not in keep]:
            del self.tls_counters[name]

    def pool(self, cluster: Cluster, endpoint: Endpoint) -> Pool:
        key = pool_key(cluster, endpoint)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._new_pool(cluster, endpoint, key[0])
        return pool

    def _new_pool(self, cluster: Cluster, endpoint: Endpoint, h2: bool) -> Pool:
        t = cluster.timeouts
        tls = plan(cluster, endpoint)
        how = upgrades(cluster, endpoint)

        def origin(h2: bool) -> Origination | None:
            if tls is None:
                return None
            return Origination(
                self.identity,
                required=tls[0],
                expected=tls[1],
                h2=h2,
                counters=self.tls_counters.setdefault(cluster.name, {}),
                relay=not cluster.protocol.is_http,
                upgrade=h2 and how == "mesh",
            )

        def h1_pool() -> H1Pool:
            return H1Pool(
                endpoint,
                connect_timeout=t.connect,
                idle_timeout=t.idle,
                max_idle=cluster.max_idle_per_endpoint,
                origin=origin(False),
            )

        if not h2:
            return h1_pool()
        from ._h2 import H2Pool

        h2_pool = H2Pool(
            endpoint, connect_timeout=t.connect, idle_timeout=t.idle, origin=origin(True)
        )
        if how is None:  # an http2 or grpc cluster
            return h2_pool
        return UpgradePool(h2_pool, h1_pool(), h2_pool.origin)

    def prune(self, live: Iterable[PoolKey]) -> None:
        keep = set(live)
        for key in [k for k in self._pools if k not in keep]:
            self._pools.pop(key).close()

    def close(self) -> None:
        self.prune(())


class ClusterRuntime:
    """A cluster's endpoints as pools, picked by smooth weighted round robin."""

    def __init__(self, cluster: Cluster, upstreams: Upstreams) -> None:
        self.cluster = cluster
        self.state = upstreams.cluster_state(cluster)
        self.pools = [upstreams.pool(cluster, ep) for ep in cluster.endpoints]
        self.by_key = {p.key: p for p in self.pools}
        self.keys = [pool_key(cluster, ep) for ep in cluster.endpoints]
        self.tunnels: dict[str, Pool] = {
            p.key: p.tunnel for p in self.pools if isinstance(p, UpgradePool)
        }
        """``address:port`` → the HTTP/1.1 pool of an endpoint whose requests go as HTTP/2."""
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

    def pick_tunnel(self) -> Pool:
        """The next pick's HTTP/1.1 pool, for a request that must stay HTTP/1.1 (``Upgrade``)."""
        pool = self.pick()
        return self.tunnels.get(pool.key, pool)

    def pick_for(self, endpoint: str | None, exclude: frozenset[str]) -> Pool:
        """The pool a layer chose (``endpoint``), else the next pick not in ``exclude``
        (one round over the endpoints; if all are excluded, the plain next pick)."""
        if endpoint is not None:
            pool = self.by_key.get(endpoint)
            if pool is None:
                raise NoHealthyUpstream(f"{self.cluster.name} has no endpoint {endpoint}")
            return pool
        pool = self.pick()
        if exclude:
            for _ in range(len(self.pools)):
                if pool.key not in exclude:
                    break
                pool = self.pick()
        return pool


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
