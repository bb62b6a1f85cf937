"""Summaries across rounds, the printed tables, and the JSON file.

Every figure is summarized over rounds as median [min..max]. Ratios are taken
*within a round* (target / nginx, target / reference proxy and target / no proxy
measured minutes apart on this drifting VM would mean little), then summarized the
same way.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_contention", "format_tables", "summarize", "write_json"]

Rounds = Sequence[dict[str, dict[str, Any]]]


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def _ratios(rounds: Rounds, target: str, ref: str, key: str) -> list[float]:
    out = []
    for rnd in rounds:
        mine = rnd.get(target, {}).get("figures", {}).get(key)
        base = rnd.get(ref, {}).get("figures", {}).get(key)
        if mine is not None and base:
            out.append(round(mine / base, 3))
    return out


def summarize(rounds: Rounds, targets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per target, per figure: stats of the values and of the same-round ratios."""
    summary: dict[str, dict[str, Any]] = {}
    for t in targets:
        keys = sorted({k for rnd in rounds for k in rnd.get(t, {}).get("figures", {})})
        per: dict[str, Any] = {}
        for k in keys:
            vals = [r[t]["figures"][k] for r in rounds if k in r.get(t, {}).get("figures", {})]
            per[k] = {
                **(_stats(vals) or {}),
                "x_nginx": _stats(_ratios(rounds, t, "nginx", k)),
                "x_reference": _stats(_ratios(rounds, t, "reference", k)),
                "x_direct": _stats(_ratios(rounds, t, "direct", k)),
            }
        summary[t] = per
    return summary


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 10_000:
        return str(int(v))
    if abs(v) >= 10_000:
        return f"{v / 1000:.1f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _cell(st: dict[str, Any] | None, fmt: Callable[[float], str] = _num) -> str:
    if not st or "median" not in st:
        return "-"
    if st["n"] == 1 or st["min"] == st["max"]:
        return fmt(st["median"])
    return f"{fmt(st['median'])} [{fmt(st['min'])}..{fmt(st['max'])}]"


def _ratio(v: float) -> str:
    return f"{v:.2f}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    sep = "-" * len(line(header))
    return "\n".join([title, sep, line(header), sep, *map(line, rows), ""])


# (column header, figure key, what to show: "v" value, or the ratio to "n" nginx,
# "r" the reference proxy, "d" no proxy)
Column = tuple[str, str, str]
_RATIO = {"n": "x_nginx", "r": "x_reference", "d": "x_direct"}


def _rows(
    summary: dict[str, dict[str, Any]], labels: dict[str, str], cols: list[Column]
) -> list[list[str]]:
    rows = []
    for t, per in summary.items():
        if not per:
            continue
        row = [labels[t]]
        for _, key, show in cols:
            st = per.get(key)
            if st is None:
                row.append("-")
            elif show == "v":
                row.append(_cell(st))
            else:
                row.append(_cell(st.get(_RATIO[show]), _ratio))
        rows.append(row)
    return rows


def _section(
    title: str, summary: dict[str, dict[str, Any]], labels: dict[str, str], cols: list[Column]
) -> str:
    return _table(title, ["target", *(c[0] for c in cols)], _rows(summary, labels, cols))


def format_tables(
    summary: dict[str, dict[str, Any]],
    labels: dict[str, str],
    rates: Sequence[int],
    unavailable: dict[str, str],
    rounds: int,
) -> str:
    """The human-readable report: one table per question."""
    out = [
        f"Figures: median [min..max] over {rounds} round(s). Columns '/nginx', '/ref' and "
        "'/direct' are ratios to nginx, to the reference proxy (the CPython limit of a "
        "featureless proxy) and to no proxy, taken within each round, then summarized.\n"
    ]
    out.append(_section("Throughput, HTTP/1.1 keep-alive (wrk -t1), req/s", summary, labels, [
        ("c16", "c16_rps", "v"), ("/nginx", "c16_rps", "n"), ("/ref", "c16_rps", "r"),
        ("/direct", "c16_rps", "d"),
        ("c64", "c64_rps", "v"), ("/nginx", "c64_rps", "n"), ("/ref", "c64_rps", "r"),
        ("/direct", "c64_rps", "d"),
        ("errors", "c64_errors", "v"),
    ]))  # fmt: skip
    for r in rates:
        k = f"ol{r}"
        out.append(_section(
            f"Latency at {r} req/s, open loop, us (p50/p99/max from the scheduled time, "
            "i.e. coordinated-omission corrected; 'send' = from the actual send)",
            summary, labels, [
                ("p50", f"{k}_p50_us", "v"), ("p99", f"{k}_p99_us", "v"),
                ("max", f"{k}_max_us", "v"), ("send p50", f"{k}_send_p50_us", "v"),
                ("send p99", f"{k}_send_p99_us", "v"), ("p50 /nginx", f"{k}_p50_us", "n"),
                ("p99 /nginx", f"{k}_p99_us", "n"), ("p99 /ref", f"{k}_p99_us", "r"),
                ("p99 /direct", f"{k}_p99_us", "d"),
                ("errors", f"{k}_errors", "v"),
            ],
        ))  # fmt: skip
    out.append(_section("HTTP/2 h2c (h2load -c1 -m100), req/s", summary, labels, [
        ("req/s", "h2_rps", "v"), ("/nginx", "h2_rps", "n"), ("/direct", "h2_rps", "d"),
        ("errors", "h2_errors", "v"),
    ]))  # fmt: skip
    out.append(_section("Memory of the proxy (all its processes), MiB", summary, labels, [
        ("RSS idle", "rss_idle_mib", "v"), ("RSS after load", "rss_load_mib", "v"),
        ("PSS after load", "pss_load_mib", "v"), ("RSS load /nginx", "rss_load_mib", "n"),
    ]))  # fmt: skip
    out.append(_section(
        "CPU: per-core busy % (core 0 = load generator + upstream, core 1 = proxy) and the "
        "proxy's CPU us per request", summary, labels, [
            ("c64 core0%", "c64_core0_busy", "v"), ("c64 core1%", "c64_core1_busy", "v"),
            ("c64 us/req", "c64_proxy_cpu_us", "v"), ("/nginx", "c64_proxy_cpu_us", "n"),
            ("/ref", "c64_proxy_cpu_us", "r"),
            ("h2 core1%", "h2_core1_busy", "v"), ("h2 us/req", "h2_proxy_cpu_us", "v"),
            (f"{rates[-1]}/s us/req" if rates else "-",
             f"ol{rates[-1]}_proxy_cpu_us" if rates else "-", "v"),
            ("others% max", "foreign_max_pct", "v"),
        ],
    ))  # fmt: skip
    for t, why in unavailable.items():
        out.append(f"{labels[t]}: unavailable: {why}")
    return "\n".join(out)


def format_contention(rounds: Rounds, labels: dict[str, str], limit: float) -> str:
    """One line per (round, target, phase) where other processes competed for the CPU."""
    lines = []
    for i, rnd in enumerate(rounds, 1):
        for t, res in rnd.items():
            for key, pct in res.get("figures", {}).items():
                phase = key.removesuffix("_foreign_pct")
                if phase != key and pct >= limit:
                    top = res.get("raw", {}).get(phase, {}).get("foreign_top", [])
                    who = ", ".join(f"{cmd} {p:.0f}%" for cmd, p in top)
                    lines.append(f"  round {i}, {labels[t]}, {phase}: {pct:.0f}% ({who})")
    if not lines:
        return f"Contention: none (no other process used >= {limit:.0f}% of a core in any phase)."
    head = (
        f"WARNING, contention: other processes used >= {limit:.0f}% of a core during these "
        "phases; their figures are suspect (rerun when the machine is quiet):"
    )
    return "\n".join([head, *lines])


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
