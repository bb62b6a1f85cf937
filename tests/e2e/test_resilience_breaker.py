"""Outlier ejection and re-admission, circuit-breaker limits, against real upstreams."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._resilience import admin_port, metric, sequential, sidecar
from tests.support import Proc, control, http_get, send_then_reset, start_flaky

pytestmark = pytest.mark.e2e


def _dump(admin: int) -> dict[str, Any]:
    _, _, body = http_get(admin, "/config_dump")
    dump: dict[str, Any] = json.loads(body)
    return dump


def _outlier_state(admin: int) -> dict[str, dict[str, object]]:
    state: dict[str, dict[str, object]] = _dump(admin)["clusterState"]["upstream.default:80"][
        "outlier"
    ]
    return state


def test_failing_endpoint_is_ejected_and_readmitted(tmp_path: Path, procs: list[Proc]) -> None:
    good = [start_flaky(tmp_path, name=f"good{i}") for i in range(2)]
    bad = start_flaky(tmp_path, name="bad", fail_every=1, status=500)
    procs += [*good, bad]
    port = sidecar(
        tmp_path, procs, [good[0].port, bad.port, good[1].port],
        policy="outlierDetection: {consecutive5xx: 3, interval: 1s, baseEjectionTime: 2s}\n"
        "loadBalancer: {type: RoundRobin}",
    )  # fmt: skip
    admin = admin_port(procs)
    warmup = sequential(port, 12)
    assert warmup.servers["bad"] == 3  # round robin: every third, until the third 500
    t = sequential(port, 600)
    assert t.servers["bad"] / t.total < 0.02, t.servers
    assert t.statuses[200] == t.total - t.servers["bad"]
    state = _outlier_state(admin)
    assert state[f"127.0.0.1:{bad.port}"]["state"] in ("ejected", "probing")
    assert metric(admin, "plait_upstream_events_total", event="ejection") >= 1
    assert metric(admin, "plait_upstream_endpoints_ejected") == 1  # the breaker's state
    # A reload that leaves the cluster unchanged keeps what outlier detection learnt.
    config = procs[-1].config
    assert config is not None
    version = _dump(admin)["version"]
    other = "apiVersion: plait.dev/v1alpha1\nkind: Service\nmetadata: {name: other}\n"
    config.write_text(config.read_text() + "---\n" + other + "spec: {ports: [{port: 80}]}\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _dump(admin)["version"] == version:
        time.sleep(0.05)
    assert _dump(admin)["version"] != version
    kept = _outlier_state(admin)[f"127.0.0.1:{bad.port}"]
    times = state[f"127.0.0.1:{bad.port}"]["timesEjected"]
    assert isinstance(times, int) and times >= 1 and kept["timesEjected"] == times
    # The endpoint recovers; after its ejection time a probe finds it healthy again.
    control(bad.port, fail_every=0)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        sequential(port, 10)
        if _outlier_state(admin)[f"127.0.0.1:{bad.port}"]["state"] == "healthy":
            break
        time.sleep(0.1)
    assert _outlier_state(admin)[f"127.0.0.1:{bad.port}"]["state"] == "healthy"
    assert metric(admin, "plait_upstream_events_total", event="readmission") >= 1
    assert metric(admin, "plait_upstream_endpoints_ejected") == 0
    after = sequential(port, 30)
    assert after.statuses == {200: 30} and after.servers["bad"] == 10


def test_pending_limit_overflows_the_excess_at_once(tmp_path: Path, procs: list[Proc]) -> None:
    slow = start_flaky(tmp_path, delay_ms=600)
    procs.append(slow)
    log = tmp_path / "access.log"
    port = sidecar(
        tmp_path, procs, [slow.port],
        policy="circuitBreaker: {maxConnections: 5, maxPendingRequests: 10}",
        access_log=str(log),
    )  # fmt: skip

    def one(i: int) -> tuple[int, str, float]:
        t0 = time.monotonic()
        status, headers, _body = http_get(port, "/", timeout=10)
        return status, headers.get("x-plait-reason", ""), time.monotonic() - t0

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    overflow = [r for r in results if r[1] == "overflow"]
    served = [r for r in results if r[0] == 200]
    assert len(overflow) == 35 and len(served) == 15, sorted(results)
    assert all(r[0] == 503 and r[2] < 0.3 for r in overflow)  # refused at once, not queued
    assert max(r[2] for r in served) > 1.1  # the pending ones waited for a slot
    assert metric(admin_port(procs), "plait_upstream_events_total", event="overflow") == 35
    deadline = time.monotonic() + 5  # the access log is written in batches (~1 s)
    while time.monotonic() < deadline and log.read_text().count("\n") < 50:
        time.sleep(0.1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(1 for e in lines if e.get("failure_reason") == "overflow") == 35, lines[:3]


def test_client_abort_while_waiting_gives_the_slot_back(tmp_path: Path, procs: list[Proc]) -> None:
    """The resilience layers run by their fast pairs on the inline path: a client that
    leaves mid-request must not keep its breaker slot or its balancer in-flight count."""
    slow = start_flaky(tmp_path, delay_ms=400)
    procs.append(slow)
    port = sidecar(
        tmp_path, procs, [slow.port],
        rule="retry: {codes: [503], attempts: 2}",
        policy="circuitBreaker: {maxConnections: 1, maxPendingRequests: 0}",
    )  # fmt: skip
    admin = admin_port(procs)
    assert http_get(port, "/warm")[0] == 200  # a pooled connection: the next one goes inline
    for _ in range(3):  # RST while the request holds the only slot
        send_then_reset(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
    state = _dump(admin)["clusterState"]["upstream.default:80"]
    assert state["limits"] == {"active": 0, "pending": 0}
    assert {e["pending"] for e in state["loadBalancer"].values()} == {0}
    status, headers, _ = http_get(port, "/after")  # the one slot is free: served, no overflow
    assert (status, headers.get("x-plait-reason")) == (200, None)
    assert metric(admin, "plait_upstream_events_total", event="overflow") == 0
