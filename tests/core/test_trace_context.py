"""W3C ``traceparent`` and B3 parsing and writing: the edge cases of both specs."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.core.trace_context import (
    B3_MULTI,
    B3_SINGLE,
    W3C,
    Parent,
    decide,
    decide_trace,
    extract,
    inject,
)
from plait.sdk import Headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _h(**items: str) -> Headers:
    return Headers([(k.replace("_", "-"), v) for k, v in items.items()])


def test_valid_traceparent_with_tracestate() -> None:
    p = extract(_h(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate="a=1,b=2"))
    assert p is not None and p.form == W3C
    assert (p.trace_id, p.span_id) == (int(TRACE, 16), int(SPAN, 16))
    assert p.sampled is True and p.debug is False and p.tracestate == "a=1,b=2"
    q = extract(_h(traceparent=f"00-{TRACE}-{SPAN}-02"))  # only the sampled bit counts
    assert q is not None and q.sampled is False


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex is refused
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has nothing after the flags
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00_{TRACE}_{SPAN}_01",
        "",
        "garbage",
        "00-" + "g" * 32 + f"-{SPAN}-01",
    ],
)
def test_malformed_traceparent_is_ignored(value: str) -> None:
    assert extract(_h(traceparent=value)) is None


_W3C = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)


def _spec(value: str) -> tuple[str, str, bool] | None:
    """What W3C Trace Context says of a ``traceparent`` (the reference for the parser)."""
    m = _W3C.fullmatch(value)
    if m is None or m[1] == "ff" or (m[1] == "00" and m[5] is not None):
        return None
    if m[2] == "0" * 32 or m[3] == "0" * 16:
        return None
    return m[2], m[3], int(m[4], 16) & 1 == 1


_PIECES = st.sampled_from(["0", "1", "a", "f", "F", "g", "-", "é", " ", "00", TRACE, SPAN])


@given(st.lists(_PIECES, max_size=40).map("".join) | st.builds(
    lambda v, i, c: v[:i] + c + v[i + 1:],
    st.sampled_from([f"00-{TRACE}-{SPAN}-01", f"01-{TRACE}-{SPAN}-00-x"]),
    st.integers(0, 60), st.sampled_from(["-", "A", "0", "x", "é", ""]),
))  # fmt: skip
def test_traceparent_parsing_agrees_with_the_spec(value: str) -> None:
    raw = value.encode("latin-1", "replace")
    p = extract(Headers([(b"traceparent", raw)]))
    want = _spec(value)  # (a later version's fields after the first 55 characters: any text)
    assert (None if p is None else (p.trace_hex, p.span_hex, p.sampled)) == want
    headers = Headers([(b"traceparent", raw)])  # the decision on the caller's context alone
    decision, trace_id = decide_trace(headers, 0.0)
    if want is None:  # replaced by a fresh unsampled one
        assert decision is False and headers.get_raw("traceparent") != raw
    elif want[2]:
        assert isinstance(decision, Parent) and trace_id is None
    else:  # followed as it came
        assert (decision, trace_id) == (False, want[0].encode())
        assert headers.get_raw("traceparent") == raw


def test_malformed_traceparent_falls_back_to_b3() -> None:
    p = extract(_h(traceparent="bogus", x_b3_traceid=TRACE, x_b3_spanid=SPAN, x_b3_sampled="1"))
    assert p is not None and p.form == B3_MULTI and p.trace_id == int(TRACE, 16)


def test_higher_version_is_read_as_version_00() -> None:
    p = extract(_h(traceparent=f"01-{TRACE}-{SPAN}-01-future-fields"))
    assert p is not None and p.sampled is True
    assert extract(_h(traceparent=f"01-{TRACE}-{SPAN}-01future")) is None


@pytest.mark.parametrize(
    ("sampled", "flags", "want_sampled", "want_debug"),
    [("1", None, True, False), ("true", None, True, False), ("0", None, False, False),
     (None, None, None, False), (None, "1", True, True), ("0", "1", True, True)],
)  # fmt: skip
def test_b3_multi_sampling_state(
    sampled: str | None, flags: str | None, want_sampled: bool | None, want_debug: bool
) -> None:
    h = _h(x_b3_traceid=TRACE[16:], x_b3_spanid=SPAN)
    if sampled is not None:
        h.set("x-b3-sampled", sampled)
    if flags is not None:
        h.set("x-b3-flags", flags)
    p = extract(h)
    assert p is not None and p.trace_id == int(TRACE[16:], 16)
    assert (p.sampled, p.debug) == (want_sampled, want_debug)


@pytest.mark.parametrize(
    ("value", "want"),
    [(f"{TRACE}-{SPAN}", (None, False)), (f"{TRACE}-{SPAN}-1", (True, False)),
     (f"{TRACE}-{SPAN}-0", (False, False)), (f"{TRACE}-{SPAN}-d-{SPAN}", (True, True))],
)  # fmt: skip
def test_b3_single(value: str, want: tuple[bool | None, bool]) -> None:
    p = extract(_h(b3=value))
    assert p is not None and p.form == B3_SINGLE and (p.sampled, p.debug) == want


@pytest.mark.parametrize(
    "headers",
    [
        {"b3": "1"},  # a sampling state alone: no ids to join
        {"b3": f"{TRACE}-{SPAN}-x"},
        {"b3": f"{TRACE.upper()}-{SPAN}-1"},
        {"b3": f"{TRACE[:20]}-{SPAN}-1"},
        {"x-b3-traceid": TRACE},  # no span id
        {"x-b3-traceid": TRACE, "x-b3-spanid": "xyz"},
        {"x-b3-traceid": "0" * 16, "x-b3-spanid": SPAN},
    ],
)
def test_malformed_b3_is_ignored(headers: dict[str, str]) -> None:
    assert extract(Headers(list(headers.items()))) is None


def test_inject_keeps_the_form_the_request_came_with() -> None:
    new_span = 0x1122334455667788
    h = _h(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate="a=1")
    inject(h, int(TRACE, 16), new_span, True, extract(h))
    assert h.get("traceparent") == f"00-{TRACE}-{new_span:016x}-01"
    assert h.get("tracestate") == "a=1" and h.get("b3") is None and h.get("x-b3-spanid") is None

    h = _h(x_b3_traceid=TRACE[16:], x_b3_spanid=SPAN, x_b3_flags="1", x_b3_sampled="1")
    inject(h, int(TRACE[16:], 16), new_span, True, extract(h))
    assert h.get("x-b3-traceid") == TRACE[16:] and h.get("x-b3-spanid") == f"{new_span:016x}"
    assert h.get("x-b3-parentspanid") == SPAN and h.get("x-b3-flags") == "1"
    assert h.get("x-b3-sampled") is None
    assert h.get("traceparent") == f"00-{TRACE[16:].rjust(32, '0')}-{new_span:016x}-01"

    h = _h(b3=f"{TRACE}-{SPAN}-1")
    inject(h, int(TRACE, 16), new_span, True, extract(h))
    assert h.get("b3") == f"{TRACE}-{new_span:016x}-1-{SPAN}"


def test_inject_without_a_parent_writes_w3c_only() -> None:
    h = Headers()
    inject(h, 5, 7, False, None)
    assert h.get("traceparent") == f"00-{5:032x}-{7:016x}-00" and len(h) == 1


def _decide(ratio: float, **items: str) -> tuple[object, Headers]:
    h = _h(**items)
    return decide(h, ratio), h


def test_decide_follows_the_caller_and_the_forcing_header() -> None:
    sampled, _ = _decide(0.0, traceparent=f"00-{TRACE}-{SPAN}-01")
    assert isinstance(sampled, Parent) and sampled.span_hex == SPAN
    assert _decide(1.0, traceparent=f"00-{TRACE}-{SPAN}-00")[0] is False  # parent-based
    forced, _ = _decide(0.0, traceparent=f"00-{TRACE}-{SPAN}-00", x_plait_trace="1")
    assert isinstance(forced, Parent)
    assert _decide(0.0, x_plait_trace="1")[0] is True  # a new, sampled trace
    assert _decide(0.0, x_plait_trace="0")[0] is False
    debug, _ = _decide(0.0, x_b3_traceid=TRACE, x_b3_spanid=SPAN, x_b3_flags="1")
    assert isinstance(debug, Parent) and debug.debug
    # B3 without a sampling state: this hop's ratio decides
    assert isinstance(_decide(1.0, x_b3_traceid=TRACE, x_b3_spanid=SPAN)[0], Parent)
    assert _decide(0.0, x_b3_traceid=TRACE, x_b3_spanid=SPAN)[0] is False


def test_an_unsampled_request_without_context_gets_a_fresh_unsampled_one() -> None:
    first, h1 = _decide(0.0)
    second, h2 = _decide(0.0, traceparent="not a traceparent")
    assert first is False and second is False
    p1, p2 = extract(h1), extract(h2)  # both valid W3C now, not sampled, different traces
    assert p1 is not None and p2 is not None and p1.sampled is False and p2.sampled is False
    assert p1.trace_id != p2.trace_id and len(h2.get_all("traceparent")) == 1
    assert _decide(1.0)[0] is True  # ratio 1: every request without a decision


def test_the_decision_names_the_trace_id_the_request_then_carries() -> None:
    for h in (Headers(), Headers([("traceparent", "garbage")])):
        decision, trace_id = decide_trace(h, 0.0)
        parent = extract(h)  # a fresh unsampled context, and that is its id
        assert decision is False and parent is not None
        assert trace_id == parent.trace_hex.encode()
    unsampled = Headers([("traceparent", f"00-{TRACE}-{SPAN}-00")])
    assert decide_trace(unsampled, 0.0) == (False, TRACE.encode())  # the caller's, untouched
    b3 = Headers([("b3", f"{TRACE[16:]}-{SPAN}-0")])
    assert decide_trace(b3, 1.0) == (False, TRACE[16:].encode())  # B3 as it came, 64-bit id
    sampled = Headers([("traceparent", f"00-{TRACE}-{SPAN}-01")])
    decision, trace_id = decide_trace(sampled, 0.0)
    assert isinstance(decision, Parent) and trace_id is None  # the span's context follows
    fresh = []
    for _ in range(1000):  # across pool refills
        h = Headers()
        trace_id = decide_trace(h, 0.0)[1]
        value = h.get("traceparent")
        assert value is not None and trace_id is not None
        fresh.append((value, trace_id))
    assert len({v for v, _ in fresh}) == len({t for _, t in fresh}) == 1000
    for value, trace_id in fresh:
        parent = extract(Headers([("traceparent", value)]))  # valid W3C, never a zero id
        assert parent is not None and parent.sampled is False
        assert parent.trace_hex.encode() == trace_id and value.endswith("-00")


def test_fresh_ids_use_every_hex_digit_evenly() -> None:
    """The random digits of fresh ``traceparent`` values (trace and span id) are uniform:
    a chi-squared test over 6,400 values, failing by chance about once in a million."""
    counts = Counter[str]()
    for _ in range(6400):
        h = Headers()
        decide_trace(h, 0.0)
        value = h.get("traceparent")
        assert value is not None
        counts.update(value[3:35] + value[36:52])
    assert sorted(counts) == list("0123456789abcdef")
    expected = 6400 * 48 / 16
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 60, counts  # 15 degrees of freedom: P(chi2 >= 60) is about 1e-6
