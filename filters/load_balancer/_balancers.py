"""Endpoint pickers: smooth weighted round robin, P2C peak-EWMA, ring hash.

Each picker holds one cluster's state and picks among the endpoints not in an
``exclude`` set (if all are excluded, among all of them: the layer outside
decided that the request must still go somewhere).

* :class:`RoundRobin`: nginx's smooth weighted round robin over the allowed
  endpoints (interleaved, no bursts).
* :class:`PeakEwma`: power of two choices (Mitzenmacher) on a cost of
  ``latency estimate x (in flight + 1) / weight`` (Finagle's / Linkerd's
  peak-EWMA). The estimate jumps up to a slower sample at once ("peak") and
  decays towards faster ones with time constant ``decay`` (10 s, Linkerd), and
  decays towards 0 while an endpoint gets no traffic, so a recovered endpoint
  is tried again. Before its first response an endpoint is assumed at
  ``default_rtt`` (30 ms, Linkerd); a failed try counts as at least
  ``penalty`` so a fast-failing endpoint does not attract traffic.
* :class:`RingHash`: a consistent-hash ring (100 points per unit of weight,
  Ketama-style) keyed by a request header; a request without the header goes
  to a random endpoint. An excluded endpoint is skipped clockwise, so only its
  keys move.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Sequence

from plait.sdk import EndpointInfo

__all__ = ["PeakEwma", "RingHash", "RoundRobin"]

_rand = random.random


class RoundRobin:
    __slots__ = ("_current", "_endpoints")

    def __init__(self, endpoints: Sequence[EndpointInfo]) -> None:
        self._endpoints = tuple(endpoints)
        self._current = [0] * len(endpoints)

    def pick(self, exclude: frozenset[str]) -> str:
        eps, current = self._endpoints, self._current
        allowed = [i for i, e in enumerate(eps) if e.key not in exclude] or list(range(len(eps)))
        total = 0
        best = allowed[0]
        for i in allowed:
            current[i] += eps[i].weight
            total += eps[i].weight
            if current[i] > current[best]:
                best = i
        current[best] -= total
        return eps[best].key


class Host:
    """One endpoint's peak-EWMA state."""

    __slots__ = ("cost", "last", "pending", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.cost = -1.0  # no sample yet
        self.last = 0.0
        self.pending = 0


class PeakEwma:
    __slots__ = ("_decay", "_default", "_endpoints", "_hosts")

    def __init__(
        self, endpoints: Sequence[EndpointInfo], *, default_rtt: float = 0.03, decay: float = 10.0
    ) -> None:
        self._endpoints = tuple(e.key for e in endpoints)
        self._hosts = {e.key: Host(max(e.weight, 1)) for e in endpoints}
        self._default = default_rtt
        self._decay = decay

    def estimate(self, key: str, now: float) -> float:
        """The latency estimate of ``key`` now (decayed since its last sample)."""
        return self._estimate(self._hosts[key], now)

    def _estimate(self, h: Host, now: float) -> float:
        if h.cost < 0:
            return self._default
        return h.cost * math.exp(-(now - h.last) / self._decay)

    def load(self, key: str, now: float) -> float:
        h = self._hosts[key]
        return self._estimate(h, now) * (h.pending + 1) / h.weight

    def pick(self, exclude: frozenset[str], now: float) -> str:
        keys = self._endpoints
        allowed = [k for k in keys if k not in exclude] if exclude else keys
        if not allowed:
            allowed = keys
        if len(allowed) == 1:
            return allowed[0]
        n = len(allowed)
        i = int(_rand() * n)
        j = int(_rand() * (n - 1))
        if j >= i:
            j += 1
        a, b = allowed[i], allowed[j]
        return a if self.load(a, now) <= self.load(b, now) else b

    def start(self, key: str) -> Host | None:
        """A try to ``key`` starts; its endpoint's state for :meth:`observe` (``None``:
        not an endpoint of this cluster, nothing to track)."""
        h = self._hosts.get(key)
        if h is not None:
            h.pending += 1
        return h

    def observe(self, h: Host, rtt: float, now: float, failed: bool) -> None:
        """A try that :meth:`start` returned ``h`` for finished after ``rtt`` seconds
        (response head, or failure)."""
        h.pending -= 1
        if failed:
            rtt = max(rtt, self._default * 10)
        previous = h.cost
        if previous < 0 or rtt > previous:
            h.cost = rtt  # the first sample, or a peak: take it at once
        else:
            w = math.exp(-(now - h.last) / self._decay)
            h.cost = previous * w + rtt * (1 - w)
        h.last = now

    def describe(self, now: float) -> dict[str, object]:
        return {
            k: {"ewmaMs": round(self.estimate(k, now) * 1000, 3), "pending": h.pending}
            for k, h in self._hosts.items()
        }


class RingHash:
    __slots__ = ("_hashes", "_keys", "_ring_keys")

    def __init__(self, endpoints: Sequence[EndpointInfo], points_per_weight: int = 100) -> None:
        ring = sorted(
            (_hash(f"{e.key}-{i}"), e.key)
            for e in endpoints
            for i in range(max(e.weight, 1) * points_per_weight)
        )
        self._hashes = [h for h, _ in ring]
        self._ring_keys = [k for _, k in ring]
        self._keys = tuple(e.key for e in endpoints)

    def pick(self, value: str | None, exclude: frozenset[str]) -> str:
        if value is None:
            allowed = [k for k in self._keys if k not in exclude] or list(self._keys)
            return allowed[int(_rand() * len(allowed))]
        start = bisect_right(self._hashes, _hash(value))
        n = len(self._ring_keys)
        for step in range(n):
            key = self._ring_keys[(start + step) % n]
            if key not in exclude:
                return key
        return self._ring_keys[start % n]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
