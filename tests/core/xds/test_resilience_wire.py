"""The wire form of resilience config: durations that the YAML parser reads back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.core.config._fields import parse_duration
from plait.core.xds.wire import duration_text

_UNITS = ("h", "m", "s", "ms")


@st.composite
def _written(draw: st.DrawFn) -> str:
    """A GEP-2257 duration as a user writes one: units in order, each at most once."""
    units = draw(st.lists(st.sampled_from(_UNITS), min_size=1, max_size=4, unique=True))
    units.sort(key=_UNITS.index)
    top = {"h": 9999, "m": 99_999, "s": 99_999, "ms": 99_999}
    return "".join(f"{draw(st.integers(0, top[u]))}{u}" for u in units)


@given(_written())
def test_any_written_duration_is_written_back_exactly(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is not None
    assert parse_duration(duration_text(seconds)) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (0.025, "25ms"), (1.7000000000000002, "1s700ms"), (5400.0, "1h30m"),
     (parse_duration("27s48371ms"), "54s21371ms")],
)  # fmt: skip
def test_duration_text(seconds: float | None, text: str) -> None:
    assert seconds is not None and duration_text(seconds) == text


def test_a_duration_finer_than_milliseconds_has_no_text() -> None:
    with pytest.raises(ValueError, match="whole milliseconds"):
        duration_text(0.0004)
