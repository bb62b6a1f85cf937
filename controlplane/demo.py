"""``plait demo``: the main job — a control plane and a small mesh on one machine.

What runs (``examples/control-plane/mesh.yaml``)::

    plait control-plane            API :15014, xDS :15012, store in a fresh data dir
    frontend sidecar               admin :15000   (Sidecar "frontend", Workload of frontend)
    backend-v1 sidecar             admin :15101   (Workload of backend-v1, version=v1)
    backend-v2 sidecar             admin :15102   (Workload of backend-v2, version=v2)
    three demo apps                in this process (core/demo.py)

The demo applies the config with ``plait apply``, starts the sidecars in
control-plane mode (they register their Workloads and receive their config
over xDS), sends requests through the mesh, then changes the split to 50/50
with another ``plait apply`` and shows the sidecars follow without a restart.
The control plane and the sidecars are real ``plait`` processes; this module
only orchestrates them, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from plait.core.demo import apps, get, hold, split, tour, wait_ready

__all__ = ["run_demo"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "control-plane" / "mesh.yaml"
API, XDS = 15014, 15012
SIDECARS = (  # Sidecar resource, admin port, extra flags
    ("frontend", 15000, ("--service", "frontend")),
    ("backend-v1", 15101, ("--service", "backend-v1", "--label", "version=v1")),
    ("backend-v2", 15102, ("--service", "backend-v2", "--label", "version=v2")),
)


def _plait(*args: str, quiet: bool = False) -> list[str]:
    return [sys.executable, "-m", "plait.core.cli", "--log-level",
            "warning" if quiet else "info", *args]  # fmt: skip


@contextlib.contextmanager
def _processes(data: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    log = (data / "processes.log").open("wb")
    try:
        procs.append(subprocess.Popen(
            _plait("control-plane", "--data-dir", str(data), "--api-port", str(API),
                   "--xds-port", str(XDS)),
            stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        yield procs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def _cli(data: Path, *args: str) -> str:
    env = {**os.environ, "PLAIT_DATA_DIR": str(data), "PLAIT_SERVER": f"http://127.0.0.1:{API}"}
    r = subprocess.run(_plait(*args, quiet=True), env=env, capture_output=True, text=True,
                       check=False, timeout=30)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"plait {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def _wait_split(want: set[str], data: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if set(split(40)) >= want:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the mesh did not converge (logs: {data / 'processes.log'})")


def run_demo(*, requests: int = 200, keep_running: bool = False) -> int:
    data = Path(tempfile.mkdtemp(prefix="plait-demo-"))
    print(f"plait demo: control plane data in {data}")
    with apps(), _processes(data) as procs:
        wait_ready(API, procs, "/healthz")
        print(f"control plane: API http://127.0.0.1:{API}, xDS 127.0.0.1:{XDS}\n")
        print(f"$ plait apply -f {EXAMPLE.relative_to(EXAMPLE.parents[2])}")
        print(re.sub(r"(?m)^", "  ", _cli(data, "apply", "-f", str(EXAMPLE)).rstrip()) + "\n")
        log = (data / "processes.log").open("ab")
        for name, admin, flags in SIDECARS:
            procs.append(subprocess.Popen(
                _plait("sidecar", "--control-plane", f"127.0.0.1:{XDS}", "--sidecar", name,
                       "--node-id", f"{name}-0", "--admin-port", str(admin),
                       "--state-dir", str(data / "sidecars"), *flags),
                stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        for _, admin, _ in SIDECARS:
            wait_ready(admin, procs)
        _wait_split({"backend-v1", "backend-v2"}, data)
        print("$ plait get workloads   (each sidecar registered itself)")
        print(re.sub(r"(?m)^", "  ", _cli(data, "get", "workloads").rstrip()) + "\n")
        tour(requests)
        text = EXAMPLE.read_text().replace("weight: 90}", "weight: 50}")
        text = text.replace("weight: 10}", "weight: 50}")
        changed = data / "split-50-50.yaml"
        changed.write_text(text)
        started = time.monotonic()
        print("\n$ plait apply -f split-50-50.yaml   (the HTTPRoute's weights → 50/50)")
        print(re.sub(r"(?m)^", "  ", _cli(data, "apply", "-f", str(changed)).rstrip()))
        _wait_until_even()
        took = time.monotonic() - started
        print(f"5. after the change ({took:.2f}s incl. the CLI), {requests} requests: "
              f"{dict(split(requests))}  — no sidecar restarted")  # fmt: skip
        print(
            "\nwhere to look: http://127.0.0.1:15000/config_dump (frontend sidecar), "
            "/metrics on admin ports 15000/15101/15102, `plait get workloads`, `plait check`"
        )
        log.close()
        hold(keep_running)
    return 0


def _wait_until_even() -> None:
    """Until the frontend sidecar's active snapshot has the new weights."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dump = json.loads(get(15000, "/config_dump")[2])
        rules = dump["config"]["routes"]["backend.default:8080"]["rules"]
        if any([b["weight"] for b in r["backends"]] == [50, 50] for r in rules):
            return
        time.sleep(0.02)
    raise TimeoutError("the frontend sidecar did not receive the change")
