"""One exchange machine, two drivers: what a sidecar shows of them from outside.

A whole HTTP/1.1 request whose chain needs no wait is answered in protocol
callbacks; anything that must be awaited (a connect, an async hook, a backoff)
moves the same exchange into a task. The sidecar's debug log says when that
happens ("continues in a task"), which is what these tests count. Completion is
checked with the ``test-complete`` filter: one line per ``on_stream_complete``.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from tests.support import Proc, control, http_get, send_then_reset, start_flaky, start_mesh

pytestmark = pytest.mark.e2e

HANDED_OVER = "continues in a task"


def _mesh(
    tmp_path: Path,
    procs: list[Proc],
    plugin_env: dict[str, str],
    filters: list[str],
    upstream: int | None = None,
) -> tuple[int, Path, Proc]:
    log = tmp_path / "complete.log"
    chain = ", ".join([f"{{type: test-complete, config: {{path: '{log}'}}}}", *filters])
    port, sidecar = start_mesh(
        tmp_path,
        procs,
        filters=f"[{chain}]",
        env=plugin_env,
        upstream=upstream,
        args=("--log-level", "debug"),
    )
    return port, log, sidecar


def _handovers(sidecar: Proc) -> int:
    return sidecar.logs().count(HANDED_OVER)


def _completions(log: Path, n: int) -> list[str]:
    """The ``on_stream_complete`` lines once ``n`` arrived (and a moment for a double)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= n:
            break
        time.sleep(0.02)
    time.sleep(0.3)
    return log.read_text().splitlines() if log.exists() else []


def _get_all(port: int, n: int, path: str = "/x") -> list[int]:
    """``n`` GETs on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    for _ in range(n):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    return statuses


def test_a_sync_chain_answers_in_callbacks_with_no_task(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    header = "{type: request-header-modifier, config: {set: [{name: x-a, value: '1'}]}}"
    layers = ["{type: retry, config: {attempts: 2}}", "{type: example-retry-429}"]
    port, log, sidecar = _mesh(tmp_path, procs, plugin_env, [header, *layers])
    assert _get_all(port, 1) == [200]  # a cold pool: the connect is awaited in a task
    first = _handovers(sidecar)
    assert first >= 1
    assert _get_all(port, 30) == [200] * 30
    assert _handovers(sidecar) == first  # warm: every request answered in callbacks
    assert len(_completions(log, 31)) == 31


def test_an_async_hook_hands_over_and_the_request_completes(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    slow = "{type: test-slow, config: {seconds: 0.05}}"
    port, log, sidecar = _mesh(tmp_path, procs, plugin_env, [slow])
    assert _get_all(port, 5) == [200] * 5
    assert _handovers(sidecar) >= 5  # the hook is awaited each time: by the task driver
    assert len(_completions(log, 5)) == 5


def test_a_third_party_policy_waits_retry_after_in_the_driver(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    up = start_flaky(tmp_path, fail_every=2, status=429, retry_after=1)
    procs.append(up)
    port, log, sidecar = _mesh(
        tmp_path, procs, plugin_env, ["{type: example-retry-429}"], upstream=up.port
    )
    assert http_get(port, "/a")[0] == 200  # the 1st upstream request: answered
    before = _handovers(sidecar)
    started = time.monotonic()
    assert http_get(port, "/b")[0] == 200  # the 2nd got 429 + Retry-After: 1, then 200
    assert time.monotonic() - started >= 1.0
    assert _handovers(sidecar) > before  # the backoff is a wait: served in a task
    assert control(up.port)["requests"] == 3
    assert len(_completions(log, 2)) == 2


@pytest.mark.parametrize(
    "stage",
    ["async hook", "upstream response head", "retry backoff", "response body", "request body"],
)
def test_a_client_that_leaves_at_any_stage_completes_the_stream_once(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str], stage: str
) -> None:
    up = start_flaky(tmp_path)
    procs.append(up)
    filters = {
        "async hook": ["{type: test-slow, config: {seconds: 2}}"],
        "retry backoff": ["{type: example-retry-429}"],
    }.get(stage, [])
    port, log, sidecar = _mesh(tmp_path, procs, plugin_env, filters, upstream=up.port)
    if stage != "async hook":
        assert http_get(port, "/warm")[0] == 200  # a warm pool: the request is inline at first
    raw = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
    if stage == "upstream response head":
        control(up.port, delay_ms=2000)
    elif stage == "retry backoff":
        control(up.port, fail_every=1, status=429, retry_after=3)
    elif stage == "response body":
        raw = b"GET /stall HTTP/1.1\r\nhost: a\r\n\r\n"
    elif stage == "request body":
        raw = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n" + b"x" * 10
    warm = 0 if stage == "async hook" else 1
    send_then_reset(port, raw, after=0.5)
    lines = _completions(log, warm + 1)
    assert len(lines) == warm + 1, lines  # the abandoned stream completes exactly once
    control(up.port, fail_every=0, delay_ms=0)
    assert http_get(port, "/after", timeout=5)[0] == 200  # and the sidecar serves on
    assert len(_completions(log, warm + 2)) == warm + 2
    assert "Traceback" not in sidecar.logs()
