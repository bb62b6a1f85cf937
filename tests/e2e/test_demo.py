"""The README's main job, `plait demo` (control plane), and `plait demo-static`."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support import PY

pytestmark = pytest.mark.e2e


def _run(command: str) -> str:
    """``plait COMMAND --requests 200``: its output, after checking it exited 0."""
    r = subprocess.run(
        [PY, "-m", "plait.core.cli", command, "--requests", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_demo_runs_requests_through_both_sidecars() -> None:
    out = _run("demo-static")
    assert "status 200; backend answered 200" in out
    assert "x-caller=frontend x-route=split x-debug=(removed)" in out  # listener + route filters
    assert "x-mesh=plait" in out  # response header modifier on the way back
    assert "the canary-header rule picks: backend-v2" in out
    assert "GET /admin/secrets: 403" in out  # path-deny on the backend sidecar
    v1_seen = re.search(r"'backend-v1': (\d+)", out)
    v2_seen = re.search(r"'backend-v2': (\d+)", out)  # the dict is in arrival order
    assert v1_seen is not None and v2_seen is not None, out
    v1, v2 = int(v1_seen[1]), int(v2_seen[1])
    assert v1 + v2 == 200 and 160 <= v1 <= 195  # 90/10 within tolerance


def test_control_plane_demo_registers_workloads_and_follows_an_apply() -> None:
    """`plait demo` (the README's main job): control plane, three sidecars over xDS."""
    out = _run("demo")
    for name in ("backend-v1-0", "backend-v2-0", "frontend-0"):
        assert re.search(rf"{name}\s+default\s+\S+\s+127\.0\.0\.1\s+yes", out), out
    assert "x-caller=frontend x-route=split x-debug=(removed)" in out
    assert "the canary-header rule picks: backend-v2" in out
    assert "GET /admin/secrets: 403" in out
    assert "httproute/backend configured" in out
    before = re.search(r"weights 90/10\): \{(.*)\}", out)
    after = re.search(r"5\. after the change .*requests: \{(.*)\}", out)
    assert before is not None and after is not None, out
    v2_before = int(re.search(r"'backend-v2': (\d+)", before[1])[1])  # type: ignore[index]
    v2_after = int(re.search(r"'backend-v2': (\d+)", after[1])[1])  # type: ignore[index]
    assert 5 <= v2_before <= 40, out  # 10% of 200
    assert 70 <= v2_after <= 130, out  # 50% of 200
