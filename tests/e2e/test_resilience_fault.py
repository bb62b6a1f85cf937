"""Fault injection through a sidecar: aborts and delays in the configured share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._resilience import admin_port, concurrent, metric, sequential, sidecar
from tests.support import Proc, start_flaky

pytestmark = pytest.mark.e2e


def test_abort_ten_percent(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path)
    procs.append(up)
    fault = "[{type: fault, config: {abort: {httpStatus: 503, percentage: 10}}}]"
    port = sidecar(tmp_path, procs, [up.port], filters=fault)
    t = concurrent(port, 5000, workers=4)
    aborted = t.reasons["fault injected"]
    assert aborted == t.statuses[503]
    assert 0.08 <= aborted / 5000 <= 0.12, aborted
    reason = {"reason": "fault injected", "code": "503"}
    assert metric(admin_port(procs), "plait_requests_total", **reason) == aborted


def test_delay_share_and_header_gate(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path)
    procs.append(up)
    fault = (
        "[{type: fault, config: {header: x-chaos, "
        "delay: {fixedDelay: 100ms, percentage: 50}, abort: {grpcStatus: 14, percentage: 0}}}]"
    )
    port = sidecar(tmp_path, procs, [up.port], filters=fault)
    plain = sequential(port, 20)
    assert max(plain.latencies) < 0.07  # no header: never delayed
    t = sequential(port, 60, headers={"x-chaos": "1"})
    delayed = [s for s in t.latencies if s >= 0.1]
    assert all(s < 0.07 for s in t.latencies if s < 0.1)  # the others pass at full speed
    assert 0.27 <= len(delayed) / 60 <= 0.73, len(delayed)  # 50% +- 3.5 sigma
    assert t.statuses == {200: 60}
