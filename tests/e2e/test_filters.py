"""Filters on the real data path: entry-point discovery, containment, completion."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from tests.support import (
    Proc,
    http_get,
    send_then_reset,
    start_mesh,
)

pytestmark = pytest.mark.e2e


def _mesh(
    tmp_path: Path,
    procs: list[Proc],
    filters: str,
    env: dict[str, str] | None = None,
    upstream: int | None = None,
) -> int:
    return start_mesh(tmp_path, procs, filters=filters, env=env, upstream=upstream)[0]


def test_third_party_filter_found_through_entry_point(tmp_path: Path, procs: list[Proc]) -> None:
    # plait-example-filter is pip-installed into the test venv by scripts/setup.sh;
    # nothing names it but its entry point.
    port = _mesh(tmp_path, procs, "[{type: example-stamp, config: {value: stamped}}]")
    status, headers, body = http_get(port, "/x")
    assert status == 200
    assert json.loads(body)["headers"]["x-example-request"] == "stamped"
    assert headers["x-example-response"] == "stamped"


@pytest.mark.parametrize("hook", ["request", "response"])
def test_raising_filter_fails_closed_and_sidecar_keeps_serving(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str], hook: str
) -> None:
    port = _mesh(tmp_path, procs, f"[{{type: test-raise, config: {{hook: {hook}}}}}]", plugin_env)
    status, headers, _ = http_get(port, "/boom")
    assert status == 500
    assert headers["x-plait-reason"] == "filter test-raise failed"
    assert http_get(port, "/fine")[0] == 200
    assert http_get(port, "/boom")[0] == 500
    assert http_get(port, "/fine")[0] == 200


def test_fail_open_filter_is_skipped(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    port = _mesh(
        tmp_path,
        procs,
        "[{type: test-raise, config: {hook: request}, failStrategy: FailOpen}]",
        plugin_env,
    )
    assert http_get(port, "/boom")[0] == 200


def test_async_filter_hook(tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]) -> None:
    port = _mesh(tmp_path, procs, "[{type: test-slow, config: {seconds: 0.05}}]", plugin_env)
    status, _, body = http_get(port, "/slow")
    assert status == 200 and json.loads(body)["headers"]["x-slow"] == "1"


def _completions(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_on_stream_complete_exactly_once_including_aborts(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    log = tmp_path / "complete.log"
    port = _mesh(
        tmp_path, procs, f"[{{type: test-complete, config: {{path: '{log}'}}}}]", plugin_env
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(20):
        conn.request("GET", f"/ok/{i}")
        conn.getresponse().read()
    conn.close()
    # client aborts: one while the upstream is still working, one mid request body
    for raw in (
        b"GET /delay/0.5 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some",
    ):
        send_then_reset(port, raw)
    deadline = time.monotonic() + 5
    while len(_completions(log)) < 22 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # anything extra (a double call) would show up by now
    lines = _completions(log)
    paths = [line.split()[2] for line in lines]
    assert sorted(paths) == sorted([f"/ok/{i}" for i in range(20)] + ["/delay/0.5", "/partial"])
    calls_per_instance = {line.split()[1] for line in lines}
    assert calls_per_instance == {"1"}, "on_stream_complete ran twice on one instance"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off a raw socket (content-length or chunked)."""
    f = sock.makefile("rb")
    status = int(f.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    body = b""
    while size := int(f.readline().split(b";")[0], 16):
        body += f.read(size)
        f.readline()
    f.readline()
    return status, headers, body


def test_a_filter_that_changes_a_streamed_request_body_length_is_framed_anew(
    tmp_path: Path, procs: list[Proc], plugin_env: dict[str, str]
) -> None:
    """The request head (with the client's content-length) goes upstream before the body
    has passed the data hooks; a hook that changes the length must not break the framing."""
    port = _mesh(tmp_path, procs, "[{type: test-stretch}]", plugin_env)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabcde")
        time.sleep(0.2)  # the head goes upstream and the body streams
        sock.sendall(b"fghij")
        status, _, body = _read_response(sock)
        assert status == 200, body
        half = len(body) // 2
        assert body[:half] == body[half:]  # the response chunk, doubled on its way back
        assert json.loads(body[:half])["body"] == "abcdeabcdefghijfghij"
        # the connection is still good for the next request
        sock.sendall(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
