"""Trace context on the wire: W3C ``traceparent`` and B3, read and written without the SDK.

Theory of operation
-------------------
Every traced request passes through :func:`extract`, so it does only what the
sampling decision needs: at most four header look-ups and one regular
expression. The OpenTelemetry propagators build a ``Context`` and a
``NonRecordingSpan`` per call (several microseconds), more than the budget of an
unsampled request, so the formats are parsed here and the SDK is only touched
once a request is sampled (``tracing.py``).

Precedence: a valid ``traceparent`` wins; else B3 multi-header
(``x-b3-traceid``/``x-b3-spanid``/``x-b3-sampled``/``x-b3-flags``); else single
``b3``. An invalid header is ignored as if absent (never an error: the request
is served, it only starts a new trace). W3C rules (Trace Context level 1):
lower-case hex only, trace and span id not all zeros, version ``ff`` invalid,
version ``00`` exactly 55 characters, a higher version parsed as ``00`` when what
follows the flags starts with ``-``. B3: 16 or 32 hex digits of trace id (a
64-bit id is kept as is: it is the low half of the 128-bit id), ``x-b3-sampled``
``1``/``true``/``0``/``false``, ``x-b3-flags: 1`` or single ``d`` is debug
(forces sampling); a B3 context without a sampling state leaves the decision
to this sidecar.

:func:`inject` writes the context of the span this sidecar made into the
request it forwards: always ``traceparent``, and B3 too in the form the request
came with, so an app that forwards only the B3 headers still links the hops.
``tracestate`` is left as it came (this sidecar adds no entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from plait.sdk import Headers

__all__ = ["B3_MULTI", "B3_SINGLE", "W3C", "Parent", "extract", "format_traceparent", "inject"]

W3C: Final = 0
B3_MULTI: Final = 1
B3_SINGLE: Final = 2

_TRACEPARENT: Final = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
_B3_ID: Final = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_B3_SPAN: Final = re.compile(r"[0-9a-f]{16}")
_B3_SAMPLED: Final = {"1": True, "true": True, "d": True, "0": False, "false": False}


@dataclass(slots=True)
class Parent:
    """The caller's span, as the request carried it."""

    trace_id: int
    span_id: int
    sampled: bool | None
    """``None``: the caller left the decision to this hop (B3 without a sampling state)."""
    debug: bool
    """B3 debug (``x-b3-flags: 1`` or ``b3: ...-d``): sample whatever the ratio."""
    form: int
    """:data:`W3C`, :data:`B3_MULTI` or :data:`B3_SINGLE`: how it came."""
    tracestate: str | None = None


def extract(headers: Headers) -> Parent | None:
    """The caller's trace context, or ``None`` when there is none or it is malformed."""
    value = headers.get("traceparent")
    if value is not None:
        parent = _w3c(value)
        if parent is not None:
            parent.tracestate = headers.get("tracestate")
            return parent
    trace = headers.get("x-b3-traceid")
    if trace is not None:
        return _b3_multi(headers, trace)
    single = headers.get("b3")
    return _b3_single(single) if single is not None else None


def _w3c(value: str) -> Parent | None:
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace, span, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return Parent(trace_id, span_id, bool(int(flags, 16) & 1), False, W3C)


def _b3_multi(headers: Headers, trace: str) -> Parent | None:
    span = headers.get("x-b3-spanid")
    if span is None or not _B3_ID.fullmatch(trace) or not _B3_SPAN.fullmatch(span):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    debug = headers.get("x-b3-flags") == "1"
    sampled = _B3_SAMPLED.get(headers.get("x-b3-sampled") or "")
    return Parent(trace_id, span_id, True if debug else sampled, debug, B3_MULTI)


def _b3_single(value: str) -> Parent | None:
    parts = value.strip().split("-")
    if len(parts) < 2 or len(parts) > 4:  # a lone sampling state carries no ids to join
        return None
    trace, span = parts[0], parts[1]
    if not _B3_ID.fullmatch(trace) or not _B3_SPAN.fullmatch(span):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    state = parts[2] if len(parts) > 2 else ""
    if state and state not in _B3_SAMPLED:
        return None
    debug = state == "d"
    return Parent(trace_id, span_id, _B3_SAMPLED.get(state), debug, B3_SINGLE)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def inject(
    headers: Headers, trace_id: int, span_id: int, sampled: bool, parent: Parent | None
) -> None:
    """Make ``span_id`` (of ``trace_id``) the parent the next hop sees."""
    headers.set("traceparent", format_traceparent(trace_id, span_id, sampled))
    if parent is None or parent.form == W3C:
        return
    trace = f"{trace_id:032x}" if trace_id >> 64 else f"{trace_id:016x}"
    state = "d" if parent.debug else ("1" if sampled else "0")
    if parent.form == B3_SINGLE:
        headers.set("b3", f"{trace}-{span_id:016x}-{state}-{parent.span_id:016x}")
        return
    headers.set("x-b3-traceid", trace)
    headers.set("x-b3-spanid", f"{span_id:016x}")
    headers.set("x-b3-parentspanid", f"{parent.span_id:016x}")
    if parent.debug:
        headers.set("x-b3-flags", "1")
        headers.remove("x-b3-sampled")  # debug implies sampled (B3: send one or the other)
    else:
        headers.set("x-b3-sampled", state)
