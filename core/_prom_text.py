"""Writing the Prometheus text exposition format (version 0.0.4), a few lines of it.

Theory of operation: the sidecar's counters live in plain dicts (``metrics.py``)
and become text only when ``/metrics`` is scraped; these helpers write one
family (``# HELP``, ``# TYPE``, its samples) into a list of lines. Label values
are escaped as the format says (backslash, newline, double quote) and numbers
written the way Prometheus (Go) writes them, so the output reads the same as
prometheus-client's; the tests parse it with that library's parser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Labels", "family", "filter_histogram", "go_float", "sample"]

Labels = tuple[tuple[str, str], ...]
"""``(name, value)`` pairs, in the order they are written."""


def family(
    out: list[str], name: str, kind: str, help_: str, samples: Sequence[tuple[Labels, float]]
) -> None:
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(sample(name, labels, value))


def filter_histogram(
    out: list[str],
    name: str,
    help_: str,
    labels: tuple[str, ...],
    values: dict[tuple[str, ...], float],
) -> None:
    """A filter's histogram (``plait.sdk.metrics.Histogram``): keys are the label values,
    the series (``_bucket``, ``_sum``, ``_count``) and the bucket's ``le``; buckets keep
    the order they were made in (increasing bounds)."""
    family(out, name, "histogram", help_, [])
    n = len(labels)
    for key, value in values.items():
        if len(key) != n + 2:
            continue
        pairs = list(zip(labels, key[:n], strict=True))
        if key[n] == "_bucket":
            pairs.append(("le", key[n + 1]))
        out.append(sample(name + key[n], tuple(sorted(pairs)), value))


def sample(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {go_float(value)}"
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}} {go_float(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def go_float(value: float) -> str:
    """A float the way Prometheus (Go) writes it: ``1.0``, ``+Inf``, ``1.7e+09``."""
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to an exponent sooner than Python's repr
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
