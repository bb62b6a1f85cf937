"""The README's main job, `plait demo` (control plane), and `plait demo-static`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support import PY

pytestmark = pytest.mark.e2e


def _run(command: str) -> str:
    """``plait COMMAND --requests 200``: its output, after checking it exited 0."""
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", command, "--requests", "200"],
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
    # every hop between sidecars is mTLS, with both ends' identities verified
    td = "spiffe://plait.local/ns/default/sa"
    for backend in ("backend-v1", "backend-v2"):
        assert (f"frontend -> {backend}: mTLS, peer {td}/frontend verified by {backend}; "
                f"server {td}/{backend} verified by frontend") in out, out  # fmt: skip
    assert "NOT mTLS" not in out
    before = re.search(r"weights 90/10\): \{(.*)\}", out)
    after = re.search(r"5\. after the change .*requests: \{(.*)\}", out)
    assert before is not None and after is not None, out
    v2_before = int(re.search(r"'backend-v2': (\d+)", before[1])[1])  # type: ignore[index]
    v2_after = int(re.search(r"'backend-v2': (\d+)", after[1])[1])  # type: ignore[index]
    assert 5 <= v2_before <= 40, out  # 10% of 200
    assert 70 <= v2_after <= 130, out  # 50% of 200
    # it stopped everything: no URL of the stopped mesh, but how to keep it up
    assert "where to look" not in out and "http://127.0.0.1:15000" not in out
    assert "--keep-running" in out


DEMO_PORTS = {
    "demo": (15014, 15012, 15000, 15101, 15102, 18080, 18081, 18091, 18092, 18100, 18201, 18202),
    "demo-static": (15000, 15100, 18080, 18081, 18091, 18092, 18100, 18201, 18202),
}


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = {int(k) for k in (task / "children").read_text().split()}
                todo += list(kids - found)
                found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("command", ["demo", "demo-static"])
def test_sigterm_to_a_demo_kept_running_stops_every_process(command: str) -> None:
    demo = subprocess.Popen(
        [PY, "-m", "plait.core.ops.cli", command, "--keep-running", "--requests", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("running;"):
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(90), "".join(lines)
        out = "".join(lines)
        children = _descendants(demo.pid)
        assert len(children) >= (4 if command == "demo" else 2), children
        data = None
        if command == "demo":
            found = re.search(r"control plane data in (\S+)", out)
            assert found is not None, out
            data = Path(found[1])
            log = (data / "processes.log").read_text()
            # one log for all: the control plane's lines and every sidecar's
            assert "plait.controlplane" in log
            assert log.count("sidecar ready: config") == 3, log
            assert "http://127.0.0.1:15000/config_dump" in out  # alive: kept running
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0  # the way a kept-running demo is meant to end
        reader.join(5)
        assert not [pid for pid in children if _alive(pid)], "".join(lines)
        assert not [port for port in DEMO_PORTS[command] if _listening(port)]
        if data is not None:
            assert not data.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of its session is left
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(10)
        reader.join(5)
        assert demo.stdout is not None
        demo.stdout.close()
