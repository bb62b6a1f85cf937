"""``plait stat``'s arithmetic: sidecar counters at two times → rates, success, percentiles.

Theory of operation: :func:`parse_metrics` reads the two families a sidecar's
``/metrics`` keeps per listener, ``plait_requests_total`` (by ``code``) and the
``plait_request_duration_seconds`` histogram (its ``_bucket`` series by ``le``),
summing over any other label. :func:`delta` subtracts a sample taken at the start
of the window from one taken at its end (a counter that went down means the
sidecar restarted: its end value is the delta, as Prometheus's ``increase``).
:func:`summarize` adds the deltas of a group of listeners and derives what Linkerd's
``viz stat`` shows: requests, success rate (responses below 500 over all; a
request that got no response, code 0, failed), requests per second over the
window, and p50/p95/p99 interpolated within histogram buckets exactly as
Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counts", "delta", "parse_metrics", "quantile", "summarize"]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_REQUESTS = "plait_requests_total"
_BUCKET = "plait_request_duration_seconds_bucket"


@dataclass
class Counts:
    """One listener's counters: requests by response code, cumulative buckets by bound."""

    codes: dict[int, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_metrics(text: str) -> dict[str, Counts]:
    """Listener name → its counts, from the Prometheus text format."""
    out: dict[str, Counts] = {}
    for line in text.splitlines():
        if not line.startswith(("plait_requests_total", "plait_request_duration_seconds_bucket")):
            continue
        m = _LINE.match(line)
        if m is None or m.group(1) not in (_REQUESTS, _BUCKET):
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        counts = out.setdefault(labels.get("listener", ""), Counts())
        if m.group(1) == _REQUESTS:
            code = int(labels.get("code", "0") or 0)
            counts.codes[code] = counts.codes.get(code, 0.0) + value
        else:
            le = float(labels.get("le", "+Inf"))
            counts.buckets[le] = counts.buckets.get(le, 0.0) + value
    return out


def _minus(end: dict[Any, float], start: dict[Any, float]) -> dict[Any, float]:
    if any(v < start.get(k, 0.0) for k, v in end.items()):
        return dict(end)  # a reset: the sidecar restarted within the window
    return {k: v - start.get(k, 0.0) for k, v in end.items()}


def delta(start: dict[str, Counts], end: dict[str, Counts]) -> dict[str, Counts]:
    """What each listener counted between the two samples."""
    out = {}
    for listener, e in end.items():
        s = start.get(listener, Counts())
        out[listener] = Counts(_minus(e.codes, s.codes), _minus(e.buckets, s.buckets))
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative ``buckets``; None without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):  # in the open top bucket: the highest finite bound
                return prev_bound
            if bound <= 0:
                return bound
            in_bucket = count - prev_count
            if in_bucket <= 0:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / in_bucket
        prev_bound, prev_count = bound, count
    return prev_bound


def summarize(parts: list[Counts], seconds: float) -> dict[str, Any]:
    """The stat of a group of listeners over a window of ``seconds``."""
    codes: dict[int, float] = {}
    buckets: dict[float, float] = {}
    for part in parts:
        for code, n in part.codes.items():
            codes[code] = codes.get(code, 0.0) + n
        for le, n in part.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + n
    total = sum(codes.values())
    ok = sum(n for code, n in codes.items() if 0 < code < 500)

    def ms(q: float) -> float | None:
        v = quantile(q, buckets)
        return None if v is None else round(v * 1000, 3)

    return {
        "requests": int(total),
        "success": int(ok),
        "successRate": round(ok / total, 4) if total else None,
        "rps": round(total / seconds, 3) if seconds > 0 else None,
        "p50_ms": ms(0.5),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "codes": {str(code): int(n) for code, n in sorted(codes.items()) if n},
    }
