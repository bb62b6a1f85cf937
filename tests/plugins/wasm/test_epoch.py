"""The per-callback bound is CPU time: the epoch advances with the guest thread's CPU
clock, so a callback that is only preempted on a busy host keeps its whole bound."""

from __future__ import annotations

import time

from plait.plugins.wasm import _engine


def _wait_for_tick() -> None:
    start = _engine.EPOCH[0]
    deadline = time.monotonic() + 5
    while _engine.EPOCH[0] == start and time.monotonic() < deadline:
        pass  # burn CPU on this (the guest) thread until the ticker counts it


def test_the_epoch_follows_the_guest_threads_cpu_time_not_the_clock() -> None:
    _engine.engine()
    _engine.guest_thread()
    _wait_for_tick()  # the ticker now watches this thread

    idle_from = _engine.EPOCH[0]
    time.sleep(0.3)  # 60 ticks of wall time, no CPU
    assert _engine.EPOCH[0] - idle_from <= 2

    busy_from, cpu_from = _engine.EPOCH[0], time.thread_time()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass
    cpu = time.thread_time() - cpu_from
    time.sleep(0.02)  # the ticker's next look
    ticks = _engine.EPOCH[0] - busy_from
    expected = cpu / _engine.EPOCH_TICK
    assert expected - 3 <= ticks <= expected + 3, (ticks, expected)
