"""Retries, the retry budget and timeouts, against real upstream processes."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path

import pytest

from tests.e2e._resilience import admin_port, metric, sequential, sidecar
from tests.support import Proc, control, free_port, http_get, start_flaky

pytestmark = pytest.mark.e2e

# Outlier detection would eject a single always-failing endpoint (tested in
# test_resilience_breaker.py); here it is off so every try reaches the upstream.
NO_EJECTION = "outlierDetection: {consecutive5xx: 0}"
GENEROUS_BUDGET = "retryConstraint: {budget: {percent: 100, interval: 10s}}\n" + NO_EJECTION


def test_retries_hide_one_failure_in_three(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path, fail_every=3, status=503)
    procs.append(up)
    # 1 in 3 failing needs retries for a third of the traffic: above the default 20%
    # budget, so this policy raises it (the budget has its own test below).
    port = sidecar(
        tmp_path, procs, [up.port],
        rule="retry: {codes: [503], attempts: 2, backoff: 1ms}", policy=GENEROUS_BUDGET,
    )  # fmt: skip
    plain = sidecar(tmp_path, procs, [up.port])
    baseline = sequential(plain, 600)
    assert 0.60 <= baseline.statuses[200] / baseline.total <= 0.73, baseline.statuses
    t = sequential(port, 3000)
    assert t.statuses[200] / t.total >= 0.999, t.statuses
    seen = control(up.port)
    assert seen["failed"] >= 900 + 150  # the upstream really failed a third of all tries


def test_budget_caps_retries_and_fails_fast(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path, fail_every=1, status=503)
    procs.append(up)
    port = sidecar(
        tmp_path, procs, [up.port],
        rule="retry: {codes: [503], attempts: 3, backoff: 20ms}",
        policy="retryConstraint: {budget: {percent: 20, interval: 10s}, "
        "minRetryRate: {count: 10, interval: 1s}}\n" + NO_EJECTION,
    )  # fmt: skip
    t0 = time.monotonic()
    t = sequential(port, 800)
    window = time.monotonic() - t0
    upstream = control(up.port)["requests"]
    retries = upstream - 800
    assert t.statuses == {503: 800}  # the caller gets the upstream's own answer
    assert 0 < retries <= 0.2 * 800 + 10 * (window + 1), (retries, window)
    # Once the budget is spent the failure comes back at once, not after the backoff series
    # (3 retries at 20 ms base wait up to 20+40+80 ms).
    assert statistics.median(t.latencies) < 0.01, statistics.median(t.latencies)
    admin = admin_port(procs)
    exhausted = metric(admin, "plait_upstream_events_total", event="retry_budget_exhausted")
    assert exhausted >= 800 - retries - 5
    assert metric(admin, "plait_upstream_events_total", event="retry") == retries


def test_no_response_and_no_budget_is_503_with_reason(tmp_path: Path, procs: list[Proc]) -> None:
    dead = free_port()  # nothing listens: every try is a connect failure
    port = sidecar(
        tmp_path, procs, [dead],
        rule="retry: {attempts: 1, backoff: 1ms}",
        policy="retryConstraint: {budget: {percent: 0}, minRetryRate: {count: 1, interval: 1h}}\n"
        + NO_EJECTION,
    )  # fmt: skip
    first = sequential(port, 1)
    assert first.statuses == {503: 1}
    assert first.reasons == {"upstream connect failure": 1}  # the one retry allowed was used
    t = sequential(port, 5)
    assert t.statuses == {503: 5}
    assert t.reasons == {"retry budget exhausted": 5}


def test_per_try_timeout_retries_elsewhere_within_the_deadline(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hang = start_flaky(tmp_path, name="hang", hang=1)
    good = start_flaky(tmp_path, name="good")
    procs += [hang, good]
    port = sidecar(
        tmp_path, procs, [hang.port, good.port],
        rule="retry: {attempts: 2, backoff: 1ms}\n"
        "timeouts: {request: 1500ms, backendRequest: 200ms}",
    )  # fmt: skip
    t = sequential(port, 10)
    assert t.statuses == {200: 10} and t.servers == {"good": 10}
    assert max(t.latencies) < 0.2 + 0.15  # one per-try timeout at most, then the good one
    assert control(hang.port)["requests"] >= 3  # the hanging endpoint was tried and left
    # The deadline travelled upstream: the good endpoint saw what was left of it.
    _, _, body = http_get(port, "/")
    assert 0 < int(json.loads(body)["headers"]["x-plait-timeout-ms"]) <= 200


def test_overall_deadline_is_never_exceeded(tmp_path: Path, procs: list[Proc]) -> None:
    a = start_flaky(tmp_path, name="a", hang=1)
    b = start_flaky(tmp_path, name="b", hang=1)
    procs += [a, b]
    port = sidecar(
        tmp_path, procs, [a.port, b.port],
        rule="retry: {attempts: 5, backoff: 1ms}\n"
        "timeouts: {request: 500ms, backendRequest: 200ms}"
    )  # fmt: skip
    t = sequential(port, 4)
    assert t.statuses == {504: 4}
    assert all(0.45 <= s < 0.65 for s in t.latencies), t.latencies


def test_only_idempotent_methods_are_retried(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path, fail_every=1, status=503)
    procs.append(up)
    port = sidecar(
        tmp_path, procs, [up.port], rule="retry: {codes: [503], attempts: 2, backoff: 1ms}",
        policy=GENEROUS_BUDGET,
    )  # fmt: skip
    sequential(port, 5, method="POST")
    assert control(up.port, clear=True)["methods"] == {"POST": 5}
    sequential(port, 5, method="PUT")
    assert control(up.port)["methods"] == {"PUT": 15}  # 1 try + 2 retries each


def test_connect_failure_moves_to_a_live_endpoint(tmp_path: Path, procs: list[Proc]) -> None:
    good = start_flaky(tmp_path, name="good")
    procs.append(good)
    port = sidecar(
        tmp_path, procs, [free_port(), good.port], rule="retry: {attempts: 1, backoff: 1ms}",
        policy=GENEROUS_BUDGET,
    )  # fmt: skip
    t = sequential(port, 20, method="POST")  # nothing was sent: safe for any method
    assert t.statuses == {200: 20}


def test_the_next_hop_honours_the_callers_deadline(tmp_path: Path, procs: list[Proc]) -> None:
    slow = start_flaky(tmp_path, delay_ms=1000)
    procs.append(slow)
    port = sidecar(tmp_path, procs, [slow.port])  # no timeout of its own
    t0 = time.monotonic()
    status, headers, _ = http_get(port, "/", headers={"x-plait-timeout-ms": "200"})
    assert status == 504 and headers["x-plait-reason"] == "request timeout"
    assert time.monotonic() - t0 < 0.5


def test_stream_idle_timeout_resets_a_stalled_body(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path)
    procs.append(up)
    port = sidecar(tmp_path, procs, [up.port], policy="timeouts: {streamIdle: 300ms}")
    t0 = time.monotonic()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        http_get(port, "/stall")
    assert time.monotonic() - t0 < 1.5  # not the upstream's 2 s pause
    status, _, _body = http_get(port, "/")  # the sidecar is fine afterwards
    assert status == 200
