"""Metric instruments a filter keeps (counters, gauges, histograms), shown on ``/metrics``.

A filter creates its instruments when its config is parsed (shared by every
stream, like anything else on the config object) and updates them from its
hooks::

    from plait.sdk import metrics

    AUDITED = metrics.counter("myteam_audited_total", "Requests audited", ("policy",))
    ...
    AUDITED.inc(policy.name)

Instruments live in one registry per process (:data:`REGISTRY`). Asking again
for a name that exists returns the same instrument, so a config reload keeps the
counts; asking with another kind or other label names, or for a name the
sidecar's own families use (:meth:`Registry.reserve`), is a :class:`ValueError`
(a config error for the filter that asked). The sidecar reads the registry only
when it is scraped (:meth:`Registry.collect`), and a ``--workers`` supervisor
sums the workers' values (gauges too: each worker's share of a mesh-wide level).

An update is one dict operation (a histogram's: one per bucket): cheap enough
for every request, but label values must be bounded (a policy or cluster name, a
status class), never a raw path or an address.

A histogram keeps, per label values, the cumulative count of each bucket (the
values ≤ its upper bound, ``+Inf`` last), the sum and the count, under keys that
end with the series (``_bucket``, ``_sum``, ``_count``) and the bucket's bound
(``le``; empty for the sum and the count), so workers' values add up like a
counter's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import Final, Literal

__all__ = [
    "REGISTRY",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Registry",
    "counter",
    "gauge",
    "histogram",
]

Kind = Literal["counter", "gauge", "histogram"]
_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
Family = tuple[str, Kind, str, tuple[str, ...], dict[tuple[str, ...], float]]
"""One instrument as collected: name, kind, help, label names, values by label values."""


class _Instrument:
    kind: Kind = "counter"

    __slots__ = ("help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def _key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labels):
            raise ValueError(
                f"metric {self.name}: expected {len(self.labels)} label values "
                f"{self.labels}, got {len(values)}"
            )
        return values


class Counter(_Instrument):
    """A count that only goes up, by label values."""

    __slots__ = ()

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"metric {self.name}: a counter cannot go down ({amount})")
        key = self._key(label_values)
        self.values[key] = self.values.get(key, 0.0) + amount


class Gauge(_Instrument):
    """A level that goes up and down, by label values."""

    kind: Kind = "gauge"
    __slots__ = ()

    def set(self, value: float, *label_values: str) -> None:
        self.values[self._key(label_values)] = float(value)

    def add(self, amount: float, *label_values: str) -> None:
        key = self._key(label_values)
        self.values[key] = self.values.get(key, 0.0) + amount


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class Histogram(_Instrument):
    """Observed values by bucket, with their sum and count, by label values."""

    kind: Kind = "histogram"
    __slots__ = ("bounds", "buckets")

    def __init__(
        self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float] = ()
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        self.bounds = tuple(_bound(b) for b in (*self.buckets, float("inf")))

    def observe(self, value: float, *label_values: str) -> None:
        key = self._key(label_values)
        values = self.values
        for bound, le in zip((*self.buckets, float("inf")), self.bounds, strict=True):
            series = (*key, "_bucket", le)
            values[series] = values.get(series, 0.0) + (1.0 if value <= bound else 0.0)
        total, count = (*key, "_sum", ""), (*key, "_count", "")
        values[total] = values.get(total, 0.0) + value
        values[count] = values.get(count, 0.0) + 1.0


class Registry:
    """The instruments of one process, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Instrument] = {}
        self._reserved: set[str] = set()
        self._lock = threading.Lock()

    def reserve(self, names: Sequence[str]) -> None:
        """Names no filter may take (the sidecar's own metric families)."""
        with self._lock:
            self._reserved.update(names)

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        found = self._get(Counter, name, help, labels)
        assert isinstance(found, Counter)
        return found

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        found = self._get(Gauge, name, help, labels)
        assert isinstance(found, Gauge)
        return found

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> Histogram:
        """The histogram ``name``; ``buckets`` (upper bounds) count when it is created."""
        if not buckets:
            raise ValueError(f"metric {name}: a histogram needs its bucket bounds")
        found = self._get(Histogram, name, help, labels, buckets)
        assert isinstance(found, Histogram)
        return found

    def _get(
        self,
        cls: type[_Instrument],
        name: str,
        help: str,
        labels: Sequence[str],
        buckets: Sequence[float] = (),
    ) -> _Instrument:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name}: label name {label!r} is not valid")
        with self._lock:
            if name in self._reserved:
                raise ValueError(f"metric {name} is one of the sidecar's own metrics")
            have = self._by_name.get(name)
            if have is None:
                made = Histogram(name, help, labels, buckets) if cls is Histogram else None
                have = self._by_name[name] = made or cls(name, help, labels)
            elif type(have) is not cls or have.labels != tuple(labels):
                raise ValueError(
                    f"metric {name} exists as a {have.kind} with labels {have.labels}; "
                    f"asked for a {cls.kind} with labels {tuple(labels)}"
                )
            return have

    def collect(self) -> Iterator[Family]:
        """``(name, kind, help, label names, {label values: value})`` per instrument."""
        with self._lock:
            instruments = sorted(self._by_name.values(), key=lambda i: i.name)
        for i in instruments:
            yield i.name, i.kind, i.help, i.labels, dict(i.values)


REGISTRY: Final = Registry()
"""This process's instruments: what ``/metrics`` shows under the filters' own names."""


def counter(name: str, help: str, labels: Sequence[str] = ()) -> Counter:
    """The process's counter ``name`` (created on first use)."""
    return REGISTRY.counter(name, help, labels)


def gauge(name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
    """The process's gauge ``name`` (created on first use)."""
    return REGISTRY.gauge(name, help, labels)


def histogram(
    name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
) -> Histogram:
    """The process's histogram ``name`` (created on first use, with ``buckets``)."""
    return REGISTRY.histogram(name, help, labels, buckets)
