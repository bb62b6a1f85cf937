"""The HTTP/2 codec's abuse limits (rapid reset, unread control answers, header block size),
driven with hand-built frames and a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from plait.core.codec import H2_PREFACE, ConnectionTerminated, H2Codec, RequestReceived, StreamReset
from plait.core.codec.http2.limits import (
    MAX_UNREAD_ANSWERS,
    RESET_INTERVAL,
    RESET_LIMIT,
    ResetBudget,
)
from plait.sdk import ResponseHead
from tests.core.codec.http2.test_frames import (
    ENHANCE_YOUR_CALM,
    GET,
    RawPeer,
    goaways,
    server,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pairs(peer: RawPeer, first: int, n: int) -> bytes:
    out = b""
    for sid in range(first, first + 2 * n, 2):
        out += peer.headers(sid, GET, end_stream=True) + RstStreamFrame(sid, 0x8).serialize()
    return out


def _terminated(events: Sequence[object]) -> int | None:
    codes = [e.error_code for e in events if isinstance(e, ConnectionTerminated)]
    return codes[-1] if codes else None


# -- the budget alone --------------------------------------------------------------------------


def test_budget_trips_past_the_limit_when_most_streams_are_reset() -> None:
    clock = FakeClock()
    budget = ResetBudget(limit=10, interval=5.0, clock=clock)
    tripped = []
    for _ in range(11):
        budget.opened()
        tripped.append(budget.reset())
    assert tripped == [False] * 10 + [True]


def test_budget_spares_a_client_that_resets_a_minority() -> None:
    budget = ResetBudget(limit=10, interval=5.0, clock=FakeClock())
    for _ in range(100):
        for _ in range(3):
            budget.opened()
        assert not budget.reset()  # a third of the streams: cancellations, not an attack


def test_budget_window_starts_afresh() -> None:
    clock = FakeClock()
    budget = ResetBudget(limit=10, interval=5.0, clock=clock)
    for _ in range(10):
        budget.opened()
        assert not budget.reset()
    clock.now += 5.0
    for _ in range(10):
        budget.opened()
        assert not budget.reset()


# -- the codec ---------------------------------------------------------------------------------


def test_rapid_reset_is_a_connection_error_and_parsing_stops() -> None:
    codec = server()
    peer = RawPeer()
    n = RESET_LIMIT + 500
    events = codec.receive_data(_pairs(peer, 1, n))
    assert _terminated(events) == ENHANCE_YOUR_CALM
    assert not any(isinstance(e, RequestReceived) for e in events)
    assert [f.error_code for f in goaways(codec.data_to_send())] == [ENHANCE_YOUR_CALM]


def test_resets_spread_over_reads_trip_the_same_budget() -> None:
    codec = server()
    peer = RawPeer()
    code = None
    for i in range(RESET_LIMIT + 1):
        sid = 1 + 2 * i
        events = codec.receive_data(peer.headers(sid, GET, end_stream=True))
        assert isinstance(events[0], RequestReceived)
        code = _terminated(codec.receive_data(RstStreamFrame(sid, 0x8).serialize()))
        if code is not None:
            break
    assert code == ENHANCE_YOUR_CALM
    assert i == RESET_LIMIT


def test_resets_after_the_response_started_are_not_counted() -> None:
    codec = server()
    peer = RawPeer()
    for i in range(RESET_LIMIT * 2):
        sid = 1 + 2 * i
        codec.receive_data(peer.headers(sid, GET, end_stream=True))
        codec.send_response(sid, ResponseHead(status=200), end_stream=False)
        events = codec.receive_data(RstStreamFrame(sid, 0x8).serialize())
        assert events == [StreamReset(sid, 0x8, True)]
    codec.data_to_send()


def test_slow_resets_never_trip() -> None:
    clock = FakeClock()
    codec = H2Codec(client_side=False, clock=clock)
    codec.initiate()
    peer = RawPeer()
    codec.receive_data(H2_PREFACE + SettingsFrame(0).serialize())
    for i in range(3 * RESET_LIMIT):
        events = codec.receive_data(_pairs(peer, 1 + 2 * i, 1))
        assert _terminated(events) is None
        clock.now += RESET_INTERVAL / RESET_LIMIT * 2  # half the budget's rate


def test_control_answers_are_capped_while_the_peer_does_not_read() -> None:
    codec = server()
    codec.output_drained()  # the handshake's SETTINGS ACK went out
    ping = PingFrame(0, b"12345678").serialize()
    events = codec.receive_data(ping * MAX_UNREAD_ANSWERS)
    assert _terminated(events) is None
    events = codec.receive_data(SettingsFrame(0).serialize())
    assert _terminated(events) == ENHANCE_YOUR_CALM


def test_control_answers_are_free_while_the_peer_reads() -> None:
    codec = server()
    ping = PingFrame(0, b"12345678").serialize()
    for _ in range(5):
        codec.data_to_send()
        codec.output_drained()
        assert _terminated(codec.receive_data(ping * MAX_UNREAD_ANSWERS)) is None


def test_acks_are_not_answers() -> None:
    codec = server()
    ack = PingFrame(0, b"12345678", flags=["ACK"]).serialize()
    assert _terminated(codec.receive_data(ack * (MAX_UNREAD_ANSWERS + 10))) is None


def test_unterminated_header_block_is_cut_at_four_times_the_limit() -> None:
    codec = server(max_header_list_size=4096)
    chunk = b"\x00" * 4096
    first = HeadersFrame(1, chunk).serialize()  # no END_HEADERS
    assert _terminated(codec.receive_data(first + ContinuationFrame(1, chunk).serialize())) is None
    events = codec.receive_data(ContinuationFrame(1, chunk).serialize() * 3)
    assert _terminated(events) == ENHANCE_YOUR_CALM
