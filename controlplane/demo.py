"""``plait demo``: the main job — a control plane and a small mesh on one machine.

What runs (``examples/control-plane/mesh.yaml``)::

    plait control-plane            API :15014, xDS :15012, store in a fresh data dir
    frontend sidecar               admin :15000   (Sidecar "frontend", Workload of frontend)
    backend-v1 sidecar             admin :15101   (Workload of backend-v1, version=v1)
    backend-v2 sidecar             admin :15102   (Workload of backend-v2, version=v2)
    three demo apps                in this process (core/ops/demo.py)

The demo applies the config with ``plait apply``, starts the sidecars in
control-plane mode (they register their Workloads, receive their config
over xDS, and get their certificates from the control plane's CA with a join
token each, ``plait workload token``), sends requests through the mesh, shows
what each sidecar-to-sidecar edge verified (mutual TLS, the SPIFFE IDs on both
ends: ``_demo_edges.py``; the backends' access logs are in the data directory),
then changes the split to 50/50 with another ``plait apply`` and shows the
sidecars follow without a restart.
Then it stops every process and removes its data directory; with
``--keep-running`` it first waits for Ctrl-C or SIGTERM (either stops all).
The control plane and the sidecars are real ``plait`` processes; this module
only orchestrates them, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from plait.controlplane._demo_edges import Edge, describe_edges
from plait.core.ops.demo import (
    apps,
    failed,
    get,
    hold,
    split,
    stop_all,
    stop_on_signals,
    tour,
    wait_ready,
)

__all__ = ["run_demo"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "control-plane" / "mesh.yaml"
API, XDS = 15014, 15012
SIDECARS = (  # Sidecar resource, admin port, extra flags
    ("frontend", 15000, ("--service", "frontend")),
    ("backend-v1", 15101, ("--service", "backend-v1", "--label", "version=v1")),
    ("backend-v2", 15102, ("--service", "backend-v2", "--label", "version=v2")),
)


def _plait(*args: str, quiet: bool = False) -> list[str]:
    return [sys.executable, "-m", "plait.core.ops.cli", "--log-level",
            "warning" if quiet else "info", *args]  # fmt: skip


@contextlib.contextmanager
def _processes(data: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], BinaryIO]]:
    """The demo's processes (the control plane first) and the one log they all append to.

    On the way out (also on Ctrl-C and SIGTERM) every process is stopped, newest first.
    """
    procs: list[subprocess.Popen[bytes]] = []
    with (data / "processes.log").open("ab") as log:
        try:
            procs.append(subprocess.Popen(
                _plait("control-plane", "--data-dir", str(data), "--api-port", str(API),
                       "--xds-port", str(XDS)),
                stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
            yield procs, log
        finally:
            stop_all(procs)


@contextlib.contextmanager
def _data_dir() -> Iterator[Path]:
    """A fresh data directory, removed at the end; if the demo failed, the log's tail is shown."""
    data = Path(tempfile.mkdtemp(prefix="plait-demo-"))
    try:
        yield data
    except Exception:
        log = data / "processes.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print("last lines of the processes' log:\n  " + "\n  ".join(tail), file=sys.stderr)
        raise
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _cli(data: Path, *args: str) -> str:
    env = {**os.environ, "PLAIT_DATA_DIR": str(data), "PLAIT_SERVER": f"https://127.0.0.1:{API}"}
    r = subprocess.run(_plait(*args, quiet=True), env=env, capture_output=True, text=True,
                       check=False, timeout=30)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"plait {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def _wait_split(want: set[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if set(split(40)) >= want:
                return
        time.sleep(0.1)
    raise TimeoutError("the mesh did not converge within 20 s")


def run_demo(*, requests: int = 200, keep_running: bool = False) -> int:
    try:
        with stop_on_signals(), _data_dir() as data:
            print(f"plait demo: control plane data in {data} (removed at the end)")
            _run(data, requests, keep_running)
    except KeyboardInterrupt as exc:
        print(f"stopped ({exc or 'Ctrl-C'}): every demo process ended", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, TimeoutError) as exc:
        return failed(exc)
    return 0


def _wait_api(data: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until the control plane's API answers ``/healthz`` over TLS, verified against the
    roots it writes to the data directory (``ca-bundle.pem``)."""
    import ssl
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a demo process exited during start-up (its output is above)")
        with contextlib.suppress(OSError, ssl.SSLError):
            tls = ssl.create_default_context(cafile=str(data / "ca-bundle.pem"))
            url = f"https://127.0.0.1:{API}/healthz"
            with urllib.request.urlopen(url, timeout=2, context=tls) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise TimeoutError(f"nothing ready on port {API} (/healthz over TLS)")


def _run(data: Path, requests: int, keep_running: bool) -> None:
    with apps(), _processes(data) as (procs, log):
        _wait_api(data, procs)
        print(f"control plane: API https://127.0.0.1:{API}, xDS 127.0.0.1:{XDS} (mutual TLS)\n")
        mesh = data / "mesh.yaml"
        mesh.write_text(_with_access_logs(EXAMPLE.read_text(), data))
        print(f"$ plait apply -f mesh.yaml   ({EXAMPLE.relative_to(EXAMPLE.parents[2])}, "
              "the backends' access logs in the data directory)")  # fmt: skip
        print(re.sub(r"(?m)^", "  ", _cli(data, "apply", "-f", str(mesh)).rstrip()) + "\n")
        for name, admin, flags in SIDECARS:
            # Each sidecar gets its certificate from the CA with a join token of its own.
            token = json.loads(_cli(data, "workload", "token", "-s", name, "-o", "json"))["token"]
            procs.append(subprocess.Popen(
                _plait("sidecar", "--control-plane", f"127.0.0.1:{XDS}", "--sidecar", name,
                       "--node-id", f"{name}-0", "--admin-port", str(admin),
                       "--state-dir", str(data / "sidecars"), "--service-account", name, *flags),
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PLAIT_JOIN_TOKEN": token}))  # fmt: skip
        for _, admin, _ in SIDECARS:
            wait_ready(admin, procs)
        _wait_split({"backend-v1", "backend-v2"})
        print("$ plait get workloads   (each sidecar registered itself)")
        print(re.sub(r"(?m)^", "  ", _cli(data, "get", "workloads").rstrip()) + "\n")
        tour(requests)
        _show_edges(data)
        text = mesh.read_text().replace("weight: 90}", "weight: 50}")
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
        hold(keep_running,
             f"where to look: http://127.0.0.1:15000/config_dump (frontend sidecar), /certs and "
             f"/metrics on "
             f"admin ports 15000/15101/15102, the processes' log {data / 'processes.log'}, and "
             f"with PLAIT_DATA_DIR={data}: `plait get workloads`, `plait check`")  # fmt: skip


def _with_access_logs(text: str, data: Path) -> str:
    """The example mesh with an access log in ``data`` for each backend sidecar."""
    for name in ("backend-v1", "backend-v2"):
        head = f"metadata: {{name: {name}, labels: {{app: backend}}}}\nspec:\n"
        if head not in text:
            raise RuntimeError(f"{EXAMPLE}: no Sidecar {name} labelled app: backend")
        log = data / f"{name}-access.log"
        text = text.replace(head, f"{head}  accessLog: {{path: {json.dumps(str(log))}}}\n")
    return text


def _show_edges(data: Path) -> None:
    """What each sidecar-to-sidecar hop verified, as the sidecars report it."""
    edges = [
        Edge("frontend", 15000, name, admin, f"{name}.default:8080", data / f"{name}-access.log")
        for name, admin, _ in SIDECARS[1:]
    ]
    print("\nidentities (certificates from the control plane's CA; what each hop between "
          "sidecars verified):")  # fmt: skip
    for line in describe_edges(edges):
        print(f"  {line}")
    print("  you -> frontend: plaintext (a caller outside the mesh; the frontend's ingress is "
          "PERMISSIVE)")  # fmt: skip
    print("  (each sidecar's certificate: GET /certs on its admin port)\n")


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
