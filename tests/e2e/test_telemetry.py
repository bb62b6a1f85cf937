"""Telemetry over xDS: a control plane pushes access logs and tracing to running sidecars.

Two sidecars (``client`` and ``other``, both in namespace ``default``) take their config
from a real control plane and call the same echo app. A mesh-wide Telemetry turns access
logs (to a file provider) and tracing (to an OTLP receiver run by the test, 100 %) on; a
workload Telemetry turns both off for ``other``. Then the mesh-wide one is changed to trace
0 % and log 0 % of the successful requests: the running sidecars follow without a restart,
export no span, and still log the failed request. A ``metrics`` override turns a sidecar's
request metrics off and on again, pushed the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    apply,
    config_dump,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)
from tests.support.mtls import metric
from tests.support.otlp_receiver import otlp_receiver

pytestmark = pytest.mark.e2e

_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # export within 0.1 s


def _mesh(app: int, client: int, other: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  ports: [{{name: http, port: 80, protocol: http}}]
  endpoints: [{{address: 127.0.0.1, port: {app}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client, labels: {{app: client}}}}
spec:
  egress: [{{name: out-client, port: {{number: {client}}}, service: app}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: other, labels: {{app: other}}}}
spec:
  egress: [{{name: out-other, port: {{number: {other}}}, service: app}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: quiet-other, namespace: default}}
spec:
  selector: {{matchLabels: {{app: other}}}}
  accessLogging: [{{disabled: true}}]
  tracing: [{{disableSpanReporting: true}}]
"""


def _telemetry(log: Path, otlp: str, trace_pct: float, log_pct: float) -> str:
    return f"""\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: plait-system}}
spec:
  extensionProviders:
  - {{name: otel, opentelemetry: {{endpoint: "{otlp}"}}}}
  - {{name: file, envoyFileAccessLog: {{path: "{log}"}}}}
  accessLogging: [{{providers: [{{name: file}}], sampling: {log_pct}}}]
  tracing: [{{providers: [{{name: otel}}], randomSamplingPercentage: {trace_pct}}}]
"""


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _app_and_control_plane(tmp_path: Path, procs: list[Proc]) -> tuple[Proc, Proc]:
    app = start_echo(tmp_path)
    procs.append(app)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    return app, cp


def test_mesh_wide_telemetry_with_a_workload_override_and_a_live_change(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app, cp = _app_and_control_plane(tmp_path, procs)
    log = tmp_path / "access.log"
    client_port, other_port = free_port(), free_port()
    with otlp_receiver() as receiver:
        apply(cp, tmp_path, _mesh(app.port, client_port, other_port), "mesh.yaml")
        apply(cp, tmp_path, _telemetry(log, receiver.endpoint, 100, 100), "telemetry.yaml")
        client = start_xds_sidecar(tmp_path, cp, "client", env=_ENV)
        other = start_xds_sidecar(tmp_path, cp, "other", env=_ENV)
        procs += [client, other]
        for i in range(3):
            assert http_get(client_port, f"/c{i}")[0] == 200
            assert http_get(other_port, f"/o{i}")[0] == 200
        spans = receiver.wait(3)
        wait_for(lambda: len(_lines(log)) >= 3, timeout=5)
        time.sleep(1.5)  # the access log flushes within a second; spans within 0.1 s
        lines = _lines(log)
        assert sorted(e["path"] for e in lines) == ["/c0", "/c1", "/c2"], lines
        assert {e["listener"] for e in lines} == {"out-client"}
        assert all(e["trace_id"] and e["status"] == 200 for e in lines)
        assert len(receiver.spans) == 3 and {s.service for s in spans} == {"client.default"}
        assert {s.kind for s in spans} == {"client"}
        assert {s.trace_id for s in spans} == {e["trace_id"] for e in lines}

        # trace 0 %, log 0 % of the successful requests: applied to the running sidecar
        before = config_dump(client)["version"]
        apply(cp, tmp_path, _telemetry(log, receiver.endpoint, 0, 0), "telemetry.yaml")
        wait_for(lambda: config_dump(client)["version"] != before, timeout=10)
        dump = config_dump(client)["config"]
        assert dump["tracing"]["sampling"] == 0 and dump["accessLogSampling"] == 0, dump
        for i in range(5):
            assert http_get(client_port, f"/quiet{i}")[0] == 200
        assert http_get(client_port, "/status/503")[0] == 503
        wait_for(lambda: len(_lines(log)) >= 4, timeout=5)
        time.sleep(1.5)
        assert [e["path"] for e in _lines(log)[3:]] == ["/status/503"]  # errors always logged
        assert len(receiver.spans) == 3  # sampling 0: nothing more exported


def _requests(admin: int, listener: str) -> float:
    return metric(admin, "plait_requests_total", listener=listener)


def test_metrics_override_turns_request_metrics_off_and_back_on(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app, cp = _app_and_control_plane(tmp_path, procs)
    client_port, other_port = free_port(), free_port()
    off = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: plait-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides: [{match: {mode: CLIENT}, disabled: DISABLED}]
"""
    apply(cp, tmp_path, _mesh(app.port, client_port, other_port), "mesh.yaml")
    apply(cp, tmp_path, off.replace("DISABLED", "true"), "telemetry.yaml")
    client = start_xds_sidecar(tmp_path, cp, "client")
    procs.append(client)
    assert config_dump(client)["config"]["listeners"][0]["requestMetrics"] is False
    for i in range(4):
        assert http_get(client_port, f"/off{i}")[0] == 200
    assert _requests(client.admin_port, "out-client") == 0
    # the other metrics stay: the connections those requests came on are counted
    assert metric(client.admin_port, "plait_connections_total", listener="out-client") == 4

    before = config_dump(client)["version"]
    apply(cp, tmp_path, off.replace("DISABLED", "false"), "telemetry.yaml")
    wait_for(lambda: config_dump(client)["version"] != before, timeout=10)
    for i in range(3):
        assert http_get(client_port, f"/on{i}")[0] == 200
    assert _requests(client.admin_port, "out-client") == 3  # counted from the change on
