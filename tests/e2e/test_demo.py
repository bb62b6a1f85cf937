"""The README's main job: `plait demo-static` on examples/demo/mesh.yaml."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support import PY

pytestmark = pytest.mark.e2e


def test_demo_runs_requests_through_both_sidecars() -> None:
    r = subprocess.run(
        [PY, "-m", "plait.core.cli", "demo-static", "--requests", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
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
