"""Trace context on the wire: W3C ``traceparent`` and B3, read and written without the SDK.

Theory of operation
-------------------
Every traced request passes through :func:`scan`, so it does only what the
sampling decision needs: one pass over the header list that collects the trace
headers (a request without any stops there), then :func:`parse`, one regular
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

The fresh ids of unsampled requests come from a pool (:class:`_IdPool`): one
``os.urandom`` read, hex-encoded in C with a ``-`` every 16 bytes,
serves 64 requests, so a request's ``traceparent`` is one slice of it and two
concatenations (formatting a fresh 192-bit number per request cost more than
the rest of the sampling decision). A forked worker empties its pool, so no two
processes hand out the same ids.
"""

from __future__ import annotations

import binascii
import os
import random
import re
from typing import Final

from plait.sdk import Headers

__all__ = [
    "B3_MULTI",
    "B3_SINGLE",
    "FORCE_HEADER",
    "W3C",
    "Parent",
    "decide",
    "decide_trace",
    "extract",
    "format_traceparent",
    "inject",
    "parse",
    "scan",
]

W3C: Final = 0
B3_MULTI: Final = 1
B3_SINGLE: Final = 2

_HEX: Final = b"0123456789abcdef"
_DASHES: Final = b"---"
_random: Final = random.random
_urandom: Final = os.urandom
_hexlify: Final = binascii.hexlify
_POOL_IDS: Final = 64
"""Fresh traceparents per random draw."""
_ZERO_SPAN_FIELD: Final = b"-" + b"0" * 16
"""An all-zero span id after its separator."""
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_ODD: Final = frozenset(b"13579bdf")  # the last hex digit of the flags: bit 0 is "sampled"
_B3_ID: Final = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_B3_SPAN: Final = re.compile(r"[0-9a-f]{16}")
_B3_SAMPLED: Final = {"1": True, "true": True, "d": True, "0": False, "false": False}
FORCE_HEADER: Final = b"x-plait-trace"
"""``x-plait-trace: 1`` samples the request whatever the ratio (for debugging)."""
_NAMES: Final = frozenset({
    b"traceparent", b"tracestate", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled",
    b"x-b3-flags", b"b3", FORCE_HEADER,
})  # fmt: skip


class Parent:
    """The caller's span, as the request carried it (ids as the lower-case hex they came
    in: an unsampled request never needs them as numbers)."""

    __slots__ = ("debug", "form", "sampled", "span_hex", "trace_hex", "tracestate")

    def __init__(
        self, trace_hex: str, span_hex: str, sampled: bool | None, debug: bool, form: int
    ) -> None:
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self.sampled = sampled
        """``None``: the caller left the decision to this hop (B3 without a sampling state)."""
        self.debug = debug
        """B3 debug (``x-b3-flags: 1`` or ``b3: ...-d``): sample whatever the ratio."""
        self.form = form
        """:data:`W3C`, :data:`B3_MULTI` or :data:`B3_SINGLE`: how it came."""
        self.tracestate: str | None = None

    @property
    def trace_id(self) -> int:
        return int(self.trace_hex, 16)

    @property
    def span_id(self) -> int:
        return int(self.span_hex, 16)


def scan(headers: Headers) -> dict[bytes, bytes] | None:
    """The trace headers of a request (first value of each), in one pass over its
    header list; ``None`` when it has none (the common case, kept cheap)."""
    found: dict[bytes, bytes] | None = None
    for name, value in headers.raw:
        if name in _NAMES:
            if found is None:
                found = {}
            found.setdefault(name, value)
    return found


def parse(found: dict[bytes, bytes]) -> Parent | None:
    """The caller's trace context from :func:`scan`'s headers; ``None`` when there is
    none or it is malformed."""
    value = found.get(b"traceparent")
    if value is not None:
        parent = _w3c(value)
        if parent is not None:
            state = found.get(b"tracestate")
            parent.tracestate = state.decode("latin-1") if state is not None else None
            return parent
    if b"x-b3-traceid" in found:
        return _b3_multi(found)
    single = found.get(b"b3")
    return _b3_single(single.decode("latin-1")) if single is not None else None


def extract(headers: Headers) -> Parent | None:
    """:func:`parse` of :func:`scan`."""
    found = scan(headers)
    return parse(found) if found is not None else None


def _w3c_trace(value: bytes) -> bytes | None:
    """The trace id of a valid ``traceparent`` (``VV-TRACE-SPAN-FF``, lower-case hex),
    else ``None``. Checked with one byte deletion, not a pattern: this runs on every
    request a traced caller sends."""
    n = len(value)
    if n != 55 and (n < 56 or value[55] != 45 or value[:2] == b"00"):
        return None  # version 00 is exactly 55 characters; a later one may add "-..."
    if value[2] != 45 or value[35] != 45 or value[52] != 45 or value[:2] == b"ff":
        return None
    if value[:55].translate(None, _HEX) != _DASHES:  # hex but for the three dashes
        return None
    trace = value[3:35]
    if trace == _ZERO_TRACE or value[36:52] == _ZERO_SPAN:
        return None
    return trace


def _w3c(value: bytes) -> Parent | None:
    trace = _w3c_trace(value)
    if trace is None:
        return None
    return Parent(trace.decode(), value[36:52].decode(), value[54] in _ODD, False, W3C)


def _b3_multi(found: dict[bytes, bytes]) -> Parent | None:
    trace = found[b"x-b3-traceid"].decode("latin-1")
    span = found.get(b"x-b3-spanid", b"").decode("latin-1")
    if not _B3_ID.fullmatch(trace) or not _B3_SPAN.fullmatch(span):
        return None
    if not int(trace, 16) or not int(span, 16):
        return None
    debug = found.get(b"x-b3-flags") == b"1"
    sampled = _B3_SAMPLED.get(found.get(b"x-b3-sampled", b"").decode("latin-1"))
    return Parent(trace, span, True if debug else sampled, debug, B3_MULTI)


def _b3_single(value: str) -> Parent | None:
    parts = value.strip().split("-")
    if len(parts) < 2 or len(parts) > 4:  # a lone sampling state carries no ids to join
        return None
    trace, span = parts[0], parts[1]
    if not _B3_ID.fullmatch(trace) or not _B3_SPAN.fullmatch(span):
        return None
    if not int(trace, 16) or not int(span, 16):
        return None
    state = parts[2] if len(parts) > 2 else ""
    if state and state not in _B3_SAMPLED:
        return None
    debug = state == "d"
    return Parent(trace, span, _B3_SAMPLED.get(state), debug, B3_SINGLE)


def decide(headers: Headers, ratio: float) -> Parent | bool:
    """The sampling decision for one request, before any span exists.

    ``False``: not sampled; the request carries a context for the hops behind (its own,
    or a fresh unsampled ``traceparent``). ``True``: sampled, a new trace. A
    :class:`Parent`: sampled, a child of the caller's span. ``ratio``: 0.0 to 1.0.
    """
    return decide_trace(headers, ratio)[0]


def decide_trace(headers: Headers, ratio: float) -> tuple[Parent | bool, bytes | None]:
    """:func:`decide`, and the trace id (lower-case hex, ASCII) the request carries after it
    when the decision fixes it: ``None`` for a sampled request (its span's context is
    injected next), so what reads it then reads the request's headers."""
    found = scan(headers)
    if found is None:  # no trace header at all: the common case
        if _random() < ratio:
            return True, None
        fresh = _IDS.unsampled()
        headers.raw.append((b"traceparent", fresh))
        return False, fresh[3:35]
    if len(found) == 1:  # a caller's traceparent alone: unsampled, the common case behind a hop
        value = found.get(b"traceparent")
        if value is not None and len(value) == 55 and value[54] not in _ODD:
            trace = _w3c_trace(value)
            if trace is not None:
                return False, trace  # followed as it came: no Parent, nothing decoded
    parent = parse(found)
    forced = found.get(FORCE_HEADER) == b"1"
    if parent is None:  # none, or malformed: replaced, never an error
        if forced or _random() < ratio:
            return True, None
        fresh = _IDS.unsampled()
        headers.set(b"traceparent", fresh)
        return False, fresh[3:35]
    if parent.sampled or forced:
        return parent, None
    if parent.sampled is None and _random() < ratio:  # the caller left it to this hop
        return parent, None
    return False, parent.trace_hex.encode()


class _IdPool:
    """Random trace and span ids, drawn :data:`_POOL_IDS` requests at a time.

    ``hex`` is 32 hex digits (16 random bytes), ``-``, 32 more, and so on; a request
    takes two groups: the first is its trace id, the first 16 digits of the second
    its span id, so ``hex[at:at + 49]`` is ``TRACE-SPAN`` as a ``traceparent`` has them.
    A draw that holds an all-zero span id (invalid in W3C; 2^-64 per id) is drawn
    again: the check is one search of the draw, not a compare per request."""

    def __init__(self) -> None:
        self.hex = b""
        self.at = 0

    def clear(self) -> None:
        self.hex = b""
        self.at = 0

    def unsampled(self) -> bytes:
        """A fresh, unsampled ``traceparent``."""
        at = self.at
        if at >= len(self.hex):
            self.hex = _draw()
            at = 0
        self.at = at + 66  # two groups of 32 digits and their separators
        return b"00-" + self.hex[at : at + 49] + b"-00"


def _draw() -> bytes:
    while True:
        ids = _hexlify(_urandom(32 * _POOL_IDS), b"-", 16)
        if _ZERO_SPAN_FIELD not in ids:  # (also matches a trace id's start: drawn again)
            return ids


_IDS: Final = _IdPool()
os.register_at_fork(after_in_child=_IDS.clear)


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
        headers.set("b3", f"{trace}-{span_id:016x}-{state}-{parent.span_hex}")
        return
    headers.set("x-b3-traceid", trace)
    headers.set("x-b3-spanid", f"{span_id:016x}")
    headers.set("x-b3-parentspanid", parent.span_hex)
    if parent.debug:
        headers.set("x-b3-flags", "1")
        headers.remove("x-b3-sampled")  # debug implies sampled (B3: send one or the other)
    else:
        headers.set("x-b3-sampled", state)
