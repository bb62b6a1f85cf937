"""End to end: a wasm filter that calls another mesh service (``proxy_http_call``) and
decides on its answer, ticks and metrics on ``/metrics`` — a real sidecar process, real
HTTP on loopback, an echo service as the auth service."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import h2.config
import h2.connection
import pytest

from tests.e2e._h2client import h2_request
from tests.support import (
    Proc,
    free_port,
    http_get,
    simple_config,
    start_echo,
    start_sidecar,
    write_config,
)

from .wat import build

pytestmark = pytest.mark.e2e


def _mesh(tmp: Path, procs: list[Proc], upstream_name: str) -> tuple[int, Proc]:
    """An echo upstream and an echo ``auth`` service; one sidecar whose listener runs the
    callout module, calling the cluster ``upstream_name``."""
    echo, auth = start_echo(tmp, "upstream"), start_echo(tmp, "auth")
    procs += [echo, auth]
    module = build("callout", tmp)
    filters = (
        f"[{{type: wasm, config: {{module: '{module}', pluginConfig: '{upstream_name}',"
        f" cacheDir: '{tmp / 'cache'}'}}}}]"
    )
    port, admin = free_port(), free_port()
    auth_service = f"""---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: auth}}
spec:
  ports: [{{name: main, port: 80, protocol: http}}]
  endpoints: [{{address: 127.0.0.1, port: {auth.port}}}]
"""
    text = simple_config(echo.port, port, admin, filters=filters) + auth_service
    sidecar = start_sidecar(write_config(tmp, text), admin, "--no-watch")
    procs.append(sidecar)
    return port, sidecar


def metric(sidecar: Proc, name: str) -> float:
    _, _, body = http_get(sidecar.admin_port, "/metrics")
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.M)
    return float(found.group(1)) if found else -1.0


def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_auth_callout_allows_and_denies(tmp_path: Path, procs: list[Proc]) -> None:
    port, sidecar = _mesh(tmp_path, procs, "auth.default:80")

    status, _, body = http_get(port, "/allowed?user=1")
    assert status == 200, sidecar.logs()
    echoed = json.loads(body)
    assert echoed["path"] == "/allowed?user=1"
    # the callout's own response body, as the auth service saw the callout
    seen_by_auth = json.loads(echoed["headers"]["x-auth-body"])
    assert seen_by_auth["path"] == "/allowed?user=1"
    assert seen_by_auth["method"] == "GET"
    assert seen_by_auth["headers"]["host"] == "auth"

    # a body waits with its paused headers and then goes upstream; HTTP/2 too
    status, _, body = http_get(port, "/allowed", method="POST", body=b"payload")
    assert status == 200
    assert json.loads(body)["body"] == "payload"
    head, body, _ = h2_request(port, [("content-type", "text/plain")], b"over h2", path="/h2")
    assert head[":status"] == "200"
    assert json.loads(body)["body"] == "over h2"
    head, body, _ = h2_request(port, [], b"", path="/status/401")
    assert (head[":status"], body) == ("403", b"denied\n")

    status, _, body = http_get(port, "/status/403")
    assert (status, body) == (403, b"denied\n")
    status, _, body = http_get(port, "/status/500")
    assert (status, body) == (403, b"denied\n")

    # a callout that takes longer than its 300 ms timeout is answered with 0 headers
    started = time.monotonic()
    status, _, body = http_get(port, "/delay/3")
    assert (status, body) == (504, b"callout failed\n")
    assert time.monotonic() - started < 2.0

    # after all that, the sidecar still serves, and each stream was deleted once
    status, _, _ = http_get(port, "/allowed")
    assert status == 200
    wait_for(lambda: metric(sidecar, "wasm_callout_deleted") == 8)
    assert metric(sidecar, "wasm_callout_log") == 8
    assert metric(sidecar, "wasm_callout_responses") == 8  # every call answered once
    assert metric(sidecar, "wasm_callout_failed") == 1  # the timed-out one


def test_short_cluster_names_and_unknown_cluster(tmp_path: Path, procs: list[Proc]) -> None:
    port, sidecar = _mesh(tmp_path, procs, "auth")
    status, _, _ = http_get(port, "/ok")
    assert status == 200, sidecar.logs()

    other = tmp_path / "unknown"
    other.mkdir()
    port, sidecar = _mesh(other, procs, "nosuch")
    # the dispatch is refused with BAD_ARGUMENT (2): the module answers 500 + 2
    status, _, _ = http_get(port, "/ok")
    assert status == 502, sidecar.logs()


def test_ticks_and_module_metrics_on_metrics(tmp_path: Path, procs: list[Proc]) -> None:
    _, sidecar = _mesh(tmp_path, procs, "auth")
    wait_for(lambda: metric(sidecar, "wasm_callout_ticks") >= 3)
    first = metric(sidecar, "wasm_callout_ticks")
    time.sleep(0.3)
    assert metric(sidecar, "wasm_callout_ticks") > first  # a tick every 50 ms
    assert metric(sidecar, "wasm_callout_level") == 7  # the gauge
    _, _, raw = http_get(sidecar.admin_port, "/metrics")
    text = raw.decode()
    assert "# TYPE wasm_callout_ticks counter" in text
    assert "# TYPE wasm_callout_level gauge" in text
    assert "# TYPE wasm_callout_latency histogram" in text
    # the histogram: each tick records 5 (Envoy's bounds: ... 1, 5, 10 ...)
    samples = dict(re.findall(r"^(wasm_callout_latency\S*) (\S+)$", text, re.M))
    count = float(samples["wasm_callout_latency_count"])
    assert count >= 3
    assert float(samples["wasm_callout_latency_sum"]) == 5 * count
    assert float(samples['wasm_callout_latency_bucket{le="1.0"}']) == 0
    assert float(samples['wasm_callout_latency_bucket{le="5.0"}']) == count
    assert float(samples['wasm_callout_latency_bucket{le="+Inf"}']) == count


def _leave_while_waiting(port: int, path: str) -> None:
    """An HTTP/2 client that sends a request and closes the connection 100 ms later."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(conn.data_to_send())
        headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")]
        conn.send_headers(1, headers, end_stream=True)
        s.sendall(conn.data_to_send())
        time.sleep(0.1)  # the stream waits for its callout (300 ms timeout)


def test_client_leaving_while_its_stream_waits(tmp_path: Path, procs: list[Proc]) -> None:
    port, sidecar = _mesh(tmp_path, procs, "auth")
    for _ in range(3):
        _leave_while_waiting(port, "/delay/0.25")  # the auth service would answer in time
    # each stream ends once: log and delete exactly once, none left waiting; each call
    # was cancelled with its stream and answered as failed (the module forgets its token)
    wait_for(lambda: metric(sidecar, "wasm_callout_deleted") == 3)
    time.sleep(0.5)  # the callouts would have answered by now: nothing more happens
    assert metric(sidecar, "wasm_callout_deleted") == 3
    assert metric(sidecar, "wasm_callout_log") == 3
    assert metric(sidecar, "wasm_callout_responses") == 3
    assert metric(sidecar, "wasm_callout_failed") == 3
    status, _, _ = http_get(port, "/allowed")
    assert status == 200, sidecar.logs()
    wait_for(lambda: metric(sidecar, "wasm_callout_deleted") == 4)


def test_ticks_stop_when_the_filter_is_unloaded(tmp_path: Path, procs: list[Proc]) -> None:
    port, sidecar = _mesh(tmp_path, procs, "auth")
    wait_for(lambda: metric(sidecar, "wasm_callout_ticks") >= 2)
    assert sidecar.config is not None
    text = sidecar.config.read_text()
    start = text.index("filters: [{type: wasm")
    sidecar.config.write_text(text[:start] + "filters: []" + text[text.index("}}]", start) + 3 :])
    sidecar.popen.send_signal(signal.SIGHUP)
    # the chain without the filter serves: no callout header reaches the upstream
    wait_for(lambda: "x-auth-body" not in json.loads(http_get(port, "/x")[2])["headers"])
    time.sleep(1.5)  # the tick task notices within a second that its plugin is gone
    stopped = metric(sidecar, "wasm_callout_ticks")
    time.sleep(0.5)
    assert metric(sidecar, "wasm_callout_ticks") == stopped
