"""How ``plait stat``, ``top`` and ``tap`` show what they got: pure functions, tested alone.

``stat`` rows come from the control plane (``api/_traffic.py``) and become a
table. ``tap`` records become one line each. ``top`` is built on tap as Linkerd's
is: :class:`Top` adds up tapped records by route (workload, direction, method,
path without the query) — count, successes (status below 500), latency
percentiles by nearest rank over the durations seen (the latest
``_SAMPLES`` per route) — and renders the busiest first. The paths are the
clients' own, so the table is bounded: past ``_ROUTES`` routes, the less busy
half is dropped (a scanner's one-off paths go, the busy routes keep their
counts), and the table says how many were dropped.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Top", "parse_duration", "render_stat", "render_tap"]

_SAMPLES = 10_000
_ROUTES = 2_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``10s``, ``500ms``, ``2m``, ``1h`` or plain seconds; ValueError names the form."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r}: expected a duration such as 10s, 500ms, 2m")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _cell(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{suffix}"
    return f"{value}{suffix}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [header, *rows]
    return "".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                   + "\n" for line in lines)  # fmt: skip


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def render_stat(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("NAME", "DIRECTION", "SIDECARS", "SUCCESS", "RPS", "P50", "P95", "P99", "REQUESTS")
    body = [
        [str(r["name"]), str(r["direction"]), str(r["sidecars"]), _percent(r["successRate"]),
         _cell(r["rps"]), _cell(r["p50_ms"], "ms"), _cell(r["p95_ms"], "ms"),
         _cell(r["p99_ms"], "ms"), str(r["requests"])]
        for r in rows
    ]  # fmt: skip
    return _table(header, body)


def render_tap(record: Mapping[str, Any]) -> str:
    """One tapped request as a line (Linkerd's ``tap`` shows the same facts)."""
    parts = [
        str(record.get("workload", "")), str(record.get("direction", "")),
        str(record.get("method", "")), str(record.get("authority", "")) or "-",
        str(record.get("path", "")), f"status={record.get('status')}",
        f"{record.get('duration_ms')}ms",
    ]  # fmt: skip
    if record.get("peer_identity"):
        parts.append(f"peer={record['peer_identity']}")
    if record.get("failure_reason"):
        parts.append(f"reason={record['failure_reason']!r}")
    return " ".join(parts) + "\n"


@dataclass
class _Route:
    count: int = 0
    success: int = 0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES))


def _rank(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class Top:
    """Tapped records added up by route."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str, str, str], _Route] = {}
        self.records = 0
        self.dropped = 0
        """Routes dropped to keep the table bounded (the least busy, ``_ROUTES`` at most)."""

    def add(self, record: Mapping[str, Any]) -> None:
        path = str(record.get("path") or "").split("?", 1)[0]
        key = (str(record.get("workload", "")), str(record.get("direction", "")),
               str(record.get("method", "")), path)  # fmt: skip
        route = self.routes.get(key)
        if route is None:
            if len(self.routes) >= _ROUTES:
                self._drop_less_busy()
            route = self.routes[key] = _Route()
        route.count += 1
        status = int(record.get("status") or 0)
        route.success += 1 if 0 < status < 500 else 0
        if isinstance(record.get("duration_ms"), int | float):
            route.durations.append(float(record["duration_ms"]))
        self.records += 1

    def _drop_less_busy(self) -> None:
        """Keep the busier half of the routes (by count)."""
        keep = sorted(self.routes.items(), key=lambda kv: -kv[1].count)[: _ROUTES // 2]
        self.dropped += len(self.routes) - len(keep)
        self.routes = dict(keep)

    def rows(self, limit: int = 0) -> list[dict[str, Any]]:
        """The busiest routes first (then by name): ``limit`` of them (0: all)."""
        out: list[dict[str, Any]] = []
        for (workload, direction, method, path), r in self.routes.items():
            d = sorted(r.durations)
            out.append({"workload": workload, "direction": direction, "method": method,
                        "path": path, "count": r.count, "success": r.success,
                        "successRate": round(r.success / r.count, 4),
                        "p50_ms": _rank(d, 0.5), "p95_ms": _rank(d, 0.95),
                        "p99_ms": _rank(d, 0.99), "max_ms": d[-1] if d else None})  # fmt: skip
        out.sort(key=lambda x: (-x["count"], x["workload"], x["path"], x["method"]))
        return out[:limit] if limit else out

    def render(self, limit: int = 0) -> str:
        header = ("WORKLOAD", "DIRECTION", "METHOD", "PATH", "COUNT", "SUCCESS", "P50", "P95",
                  "P99", "MAX")  # fmt: skip
        body = [
            [r["workload"], r["direction"], r["method"], r["path"], str(r["count"]),
             _percent(r["successRate"]), _cell(r["p50_ms"], "ms"), _cell(r["p95_ms"], "ms"),
             _cell(r["p99_ms"], "ms"), _cell(r["max_ms"], "ms")]
            for r in self.rows(limit)
        ]  # fmt: skip
        note = f"({self.dropped} less busy routes dropped)\n" if self.dropped else ""
        return _table(header, body) + note
