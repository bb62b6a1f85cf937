"""The tap on the request path: what a watcher gets, what its filters pick, and its bound."""

from __future__ import annotations

import anyio
import pytest

from plait.core.tap import Tap, TapFilter, publish
from plait.sdk import ConnectionContext, RequestHead, ResponseHead, StreamContext


def _ctx(path: str, status: int | None) -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 5000), local_address=("127.0.0.1", 80))
    ctx = StreamContext(connection=conn, request=RequestHead(method="GET", path=path,
                                                             authority="web:8080"))  # fmt: skip
    ctx.response = ResponseHead(status=status) if status is not None else None
    return ctx


def _drain(tap: Tap) -> list[dict[str, object]]:
    out = []
    while True:
        try:
            out.append(tap.receive.receive_nowait())
        except anyio.WouldBlock:
            return out


def test_a_watcher_gets_the_request_metadata() -> None:
    tap = Tap(TapFilter())
    publish([tap], _ctx("/a?q=1", 200), "in", True, 0.0025)
    publish([tap], _ctx("/b", None), "out", False, 0.5)
    first, second = _drain(tap)
    assert first["path"] == "/a?q=1" and first["status"] == 200 and first["method"] == "GET"
    assert first["authority"] == "web:8080" and first["direction"] == "inbound"
    assert first["duration_ms"] == 2.5 and first["listener"] == "in"
    assert second["status"] == 0 and second["direction"] == "outbound"
    tap.close()


def test_filters_pick_by_path_prefix_and_status_or_class() -> None:
    by_path, by_code, by_class = Tap(TapFilter(path="/a")), Tap(TapFilter(status="503")), Tap(
        TapFilter(status="5xx"))  # fmt: skip
    for path, status in (("/a/1", 200), ("/b", 503), ("/a/2", 502), ("/c", 404)):
        publish([by_path, by_code, by_class], _ctx(path, status), "in", True, 0.001)
    assert [r["path"] for r in _drain(by_path)] == ["/a/1", "/a/2"]
    assert [r["path"] for r in _drain(by_code)] == ["/b"]
    assert [r["path"] for r in _drain(by_class)] == ["/b", "/a/2"]
    for tap in (by_path, by_code, by_class):
        tap.close()


@pytest.mark.parametrize("bad", ["50", "abc", "6xx", "5x"])
def test_a_bad_status_filter_is_refused_with_the_expected_form(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a code"):
        TapFilter(status=bad)


def test_a_full_queue_drops_and_counts() -> None:
    tap = Tap(TapFilter(), queue=3)
    for i in range(10):
        publish([tap], _ctx(f"/{i}", 200), "in", True, 0.001)
    assert [r["path"] for r in _drain(tap)] == ["/0", "/1", "/2"]
    assert tap.dropped == 7
    tap.close()
