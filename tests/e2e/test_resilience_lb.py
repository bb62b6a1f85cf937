"""Load balancing against real upstreams: P2C peak-EWMA steers around a slow endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._resilience import concurrent, sequential, sidecar
from tests.support import Proc, start_flaky

pytestmark = pytest.mark.e2e


def _three(tmp: Path, procs: list[Proc]) -> list[int]:
    ups = [start_flaky(tmp, name="fast0"), start_flaky(tmp, name="slow", delay_ms=50),
           start_flaky(tmp, name="fast1")]  # fmt: skip
    procs += ups
    return [u.port for u in ups]


def test_p2c_ewma_avoids_the_slow_endpoint(tmp_path: Path, procs: list[Proc]) -> None:
    port = sidecar(tmp_path, procs, _three(tmp_path, procs), policy="loadBalancer: {}")
    t = concurrent(port, 600, workers=4)
    assert t.statuses == {200: 600}
    assert t.servers["slow"] / t.total < 0.10, t.servers


def test_round_robin_shares_evenly(tmp_path: Path, procs: list[Proc]) -> None:
    port = sidecar(
        tmp_path, procs, _three(tmp_path, procs), policy="loadBalancer: {type: RoundRobin}"
    )
    t = concurrent(port, 150, workers=4)
    assert 0.28 <= t.servers["slow"] / t.total <= 0.38, t.servers


def test_ring_hash_is_consistent_per_header(tmp_path: Path, procs: list[Proc]) -> None:
    ups = [start_flaky(tmp_path, name=f"e{i}") for i in range(3)]
    procs += ups
    port = sidecar(
        tmp_path, procs, [u.port for u in ups],
        policy="loadBalancer: {type: RingHash, ringHash: {header: x-user}}",
    )  # fmt: skip
    homes = set()
    for user in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
        t = sequential(port, 5, headers={"x-user": user})
        assert len(t.servers) == 1, (user, t.servers)  # every request of a user: one endpoint
        homes |= set(t.servers)
    assert len(homes) >= 2  # and users are spread
