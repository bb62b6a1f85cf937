"""A module's metrics (``proxy_define_metric`` and friends) as the sidecar's instruments.

A metric a module defines becomes an instrument of :mod:`plait.sdk.metrics`, so
it is shown on the sidecar's ``/metrics`` and summed across ``--workers``. Its
Prometheus name is ``wasm_`` followed by the module's name with every character
outside ``[a-zA-Z0-9_:]`` replaced by ``_`` (``auth.requests`` →
``wasm_auth_requests``; Envoy-style tags inside the name stay part of it). Equal
names are one instrument, shared by every instance and every plugin of the
process (as Envoy's stats scope), so a replaced instance keeps counting.

* counter (0): ``increment`` adds a delta ≥ 0 (a negative one is
  ``BAD_ARGUMENT``); ``record`` raises it to the value (a counter never goes
  down); ``get`` reads it.
* gauge (1): ``record`` sets, ``increment`` adds (signed), ``get`` reads it.
* histogram (2): ``record`` observes a value ≥ 0 into a Prometheus histogram
  with Envoy's default bucket bounds (:data:`BUCKETS`, 0.5 to 3,600,000: the
  module's unit, often milliseconds); ``increment`` and ``get`` are
  ``BAD_ARGUMENT`` (as in Envoy).

Values are the ABI's 64-bit integers; ``/metrics`` shows them as numbers. A name
whose instrument exists with another kind is ``BAD_ARGUMENT``.
"""

from __future__ import annotations

import re
from typing import Final

from plait.sdk import metrics

from ._abi import Status

__all__ = ["BUCKETS", "ModuleMetrics", "prometheus_name"]

Instrument = metrics.Counter | metrics.Gauge | metrics.Histogram

_BAD: Final = re.compile(r"[^a-zA-Z0-9_:]")
COUNTER: Final = 0
GAUGE: Final = 1
HISTOGRAM: Final = 2
_I64: Final = 1 << 63
BUCKETS: Final = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                  60000, 300000, 600000, 1800000, 3600000)  # fmt: skip
"""Envoy's default histogram bucket bounds."""


def prometheus_name(name: bytes) -> str:
    """The ``/metrics`` name of a module's metric."""
    return "wasm_" + _BAD.sub("_", name.decode("utf-8", "replace"))


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= _I64 else value


class ModuleMetrics:
    """The metrics one instance defined, by the ids it was given."""

    __slots__ = ("by_id", "by_key")

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[int, Instrument]] = {}
        self.by_key: dict[tuple[int, bytes], int] = {}

    def define(self, kind: int, name: bytes) -> int | None:
        """The metric's id (the same id for the same kind and name); ``None`` if refused."""
        found = self.by_key.get((kind, name))
        if found is not None:
            return found
        base = prometheus_name(name)
        what = f"metric {name.decode('utf-8', 'replace')!r} of a wasm filter"
        try:
            if kind == COUNTER:
                made: Instrument = metrics.counter(base, what)
            elif kind == GAUGE:
                made = metrics.gauge(base, what)
            elif kind == HISTOGRAM:
                made = metrics.histogram(base, what, (), BUCKETS)
            else:
                return None
        except ValueError:
            return None
        metric_id = len(self.by_id) + 1
        self.by_id[metric_id] = (kind, made)
        self.by_key[(kind, name)] = metric_id
        return metric_id

    def increment(self, metric_id: int, delta: int) -> int:
        found = self.by_id.get(metric_id)
        if found is None:
            return Status.NOT_FOUND
        kind, inst = found
        delta = _signed(delta)
        if kind == GAUGE and isinstance(inst, metrics.Gauge):
            inst.add(delta)
        elif kind == COUNTER and isinstance(inst, metrics.Counter) and delta >= 0:
            inst.inc(amount=delta)
        else:
            return Status.BAD_ARGUMENT
        return Status.OK

    def record(self, metric_id: int, value: int) -> int:
        found = self.by_id.get(metric_id)
        if found is None:
            return Status.NOT_FOUND
        kind, inst = found
        value = _signed(value)
        if kind == GAUGE and isinstance(inst, metrics.Gauge):
            inst.set(value)
        elif kind == COUNTER and isinstance(inst, metrics.Counter):
            current = inst.values.get((), 0.0)
            if value > current:
                inst.inc(amount=value - current)
        elif kind == HISTOGRAM and isinstance(inst, metrics.Histogram) and value >= 0:
            inst.observe(value)
        else:
            return Status.BAD_ARGUMENT
        return Status.OK

    def get(self, metric_id: int) -> int | None:
        """The value (``None``: not found or a histogram)."""
        found = self.by_id.get(metric_id)
        if found is None or found[0] == HISTOGRAM:
            return None
        return int(found[1].values.get((), 0.0)) & ((1 << 64) - 1)
