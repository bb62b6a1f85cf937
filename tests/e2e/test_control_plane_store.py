"""The control plane's store across a crash: one ``plait apply`` is one transaction.

A real control plane is SIGKILLed while a large apply is being written; whatever the moment,
its SQLite file then holds all of the apply's documents or none of them, and a restarted
control plane serves exactly that.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import Proc
from tests.support.controlplane import plait, start_control_plane

pytestmark = pytest.mark.e2e

N = 120


def _services(n: int) -> str:
    return "".join(
        f"""---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: svc-{i}}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {20000 + i}}}]
"""
        for i in range(n)
    )


def _stored(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM resources").fetchone()[0])


def _apply_in_background(cp: Proc, path: Path) -> subprocess.Popen[str]:
    assert cp.config is not None
    token = (cp.config / "admin-token").read_text().strip()
    env = {**os.environ, "PLAIT_SERVER": f"https://127.0.0.1:{cp.extra['api']}",
           "PLAIT_TOKEN": token, "PLAIT_CA_BUNDLE": str(cp.config / "ca-bundle.pem")}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "plait.core.ops.cli", "apply", "-f", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_sigkill_as_soon_as_the_first_document_is_stored_leaves_all_of_them(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The moment anything of the apply is visible in the store, the control plane dies:
    what is stored is the whole apply (it was committed as one), never a part."""
    data = tmp_path / "cp-data"
    cp = start_control_plane(tmp_path, data_dir=data)
    procs.append(cp)
    path = tmp_path / "many.yaml"
    path.write_text(_services(N))
    db = data / "plait.db"
    cli = _apply_in_background(cp, path)
    deadline = time.monotonic() + 60
    seen = 0
    while seen == 0 and time.monotonic() < deadline and cli.poll() is None:
        seen = _stored(db)
    cp.popen.send_signal(signal.SIGKILL)
    cp.popen.wait(10)
    cli.communicate(timeout=30)
    assert seen > 0, "the apply stored nothing before it ended"
    assert _stored(db) == N

    again = start_control_plane(tmp_path, data_dir=data)
    procs.append(again)
    items = json.loads(plait(again, "get", "services", "-o", "json").stdout)
    names = {i["metadata"]["name"] for i in items.get("items", items)}
    assert names == {f"svc-{i}" for i in range(N)}
