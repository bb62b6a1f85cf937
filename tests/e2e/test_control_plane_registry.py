"""The registry across control-plane restarts, and health checks of every Workload.

Real processes: a control plane, sidecars that register Workloads, echo apps. What is
checked is what a user sees: ``plait get workloads``, ``plait check`` and what the other
sidecars are told (their ``/config_dump``).
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support import Proc, free_port, start_echo
from tests.support.controlplane import (
    apply,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _mesh(app: int, ingress: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web}}
spec:
  ingress:
  - port: {{number: {ingress}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
"""


def _workloads(cp: Proc) -> dict[str, Any]:
    out = json.loads(plait(cp, "get", "workloads", "-o", "json").stdout or "{}")
    items = out.get("items", [out] if out.get("kind") else [])
    return {i["metadata"]["name"]: i.get("status") for i in items}


def test_a_workload_orphaned_while_the_control_plane_was_down_goes_after_the_grace(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Control plane stopped, one sidecar stopped, control plane started: the gone sidecar's
    Workload is shown disconnected (``plait check`` fails) and removed one grace period after
    the start; the sidecar that stayed reconnects and keeps its own."""
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    grace = ("--workload-grace", "6", "--health-interval", "0")
    cp = start_control_plane(tmp_path, extra=grace)
    procs.append(cp)
    second = _mesh(app.port, free_port()).split("---\n")[1].replace("name: web}", "name: web2}")
    apply(cp, tmp_path, _mesh(app.port, free_port()) + "---\n" + second)
    gone = start_xds_sidecar(tmp_path, cp, "web", "--service", "web", node_id="web-gone")
    stays = start_xds_sidecar(tmp_path, cp, "web2", "--service", "web", node_id="web-stays")
    procs += [gone, stays]
    wait_for(lambda: {"web-gone", "web-stays"} <= _workloads(cp).keys())

    data, api, xds = cp.config, cp.extra["api"], cp.extra["xds"]
    cp.stop(signal.SIGTERM)
    gone.stop()
    cp = start_control_plane(tmp_path, data_dir=data, api_port=api, xds_port=xds, extra=grace,
                             plaintext_port=cp.extra["xds_plaintext"])  # fmt: skip
    procs.append(cp)
    status = _workloads(cp)["web-gone"]
    assert status is not None and status["connected"] is False, status
    check = plait(cp, "check", check=False)
    assert check.returncode != 0 and "web-gone" in check.stdout, check.stdout
    assert "disconnected" in check.stdout, check.stdout

    wait_for(lambda: "web-gone" not in _workloads(cp), timeout=15)
    assert _workloads(cp)["web-stays"]["connected"] is True
    assert plait(cp, "check", check=False).returncode == 0


def _hand_mesh(app: int, listen: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: web-by-hand}}
spec:
  service: web
  address: 127.0.0.1
  ports: [{{port: 8080, targetPort: {app}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: caller}}
spec:
  egress:
  - port: {{number: {listen}, protocol: http}}
    service: web
"""


def _endpoints(sidecar: Proc) -> list[Any]:
    clusters = config_dump(sidecar)["config"]["clusters"]
    return [e for c in clusters.values() for e in c["endpoints"]]


def test_a_workload_applied_by_hand_is_health_checked(tmp_path: Path, procs: list[Proc]) -> None:
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    cp = start_control_plane(tmp_path, extra=("--health-interval", "0.3"))
    procs.append(cp)
    listen = free_port()
    apply(cp, tmp_path, _hand_mesh(app.port, listen))
    caller = start_xds_sidecar(tmp_path, cp, "caller")
    procs.append(caller)
    wait_for(lambda: len(_endpoints(caller)) == 1)
    assert plait(cp, "check", check=False).returncode == 0

    app.stop()
    wait_for(lambda: _endpoints(caller) == [], timeout=10)
    status = _workloads(cp)["web-by-hand"]
    assert status is not None and status["healthy"] is False, status
    check = plait(cp, "check", check=False)
    assert check.returncode != 0, check.stdout
    assert "web-by-hand" in check.stdout and "failing health checks" in check.stdout

    again = start_echo(tmp_path, "web-app", port=app.port)
    procs.append(again)
    wait_for(lambda: len(_endpoints(caller)) == 1, timeout=10)
    assert plait(cp, "check", check=False).returncode == 0


def test_a_listener_that_cannot_bind_is_nacked_by_name_and_the_nack_clears_after_a_fix(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    good = _mesh(app.port, free_port())
    apply(cp, tmp_path, good)
    web = start_xds_sidecar(tmp_path, cp, "web", "--service", "web", node_id="web-1")
    procs.append(web)
    wait_for(lambda: (_workloads(cp).get("web-1") or {}).get("ackedVersion"))
    # where the control plane reaches its admin listener (metrics discovery, stat, tap)
    assert _workloads(cp)["web-1"]["admin"] == f"127.0.0.1:{web.admin_port}"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        egress = f"  egress:\n  - port: {{number: {port}, protocol: http}}\n    service: web\n"
        apply(cp, tmp_path, good + egress, name="busy.yaml")

        def nack() -> Any:
            return (_workloads(cp).get("web-1") or {}).get("lastNack")

        wait_for(nack)
        message = nack()["message"]
        assert f"127.0.0.1:{port}" in message and "listener " in message, message
        assert "Address already in use" in message, message
        row = next(line for line in plait(cp, "get", "workloads").stdout.splitlines()
                   if line.startswith("web-1 "))  # fmt: skip
        assert row.rstrip().endswith("Address already in use"), row
        assert plait(cp, "check", check=False).returncode != 0

    apply(cp, tmp_path, good, name="fixed.yaml")
    wait_for(lambda: nack() is None)
    row = next(line for line in plait(cp, "get", "workloads").stdout.splitlines()
               if line.startswith("web-1 "))  # fmt: skip
    assert row.split()[-1] == "-", row
    assert config_dump(web)["xds"]["last_nack"] is None
    assert plait(cp, "check", check=False).returncode == 0
