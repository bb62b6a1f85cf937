"""plait's own logs: ``--log-format json`` lines for machines, text naming the worker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Proc, free_port, simple_config, start_echo, start_sidecar, write_config


def _run(tmp_path: Path, procs: list[Proc], *flags: str) -> str:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, simple_config(echo.port, port, admin), f"{port}.yaml")
    sidecar = start_sidecar(cfg, admin, *flags)
    procs.append(sidecar)
    assert sidecar.stop() == 0
    return sidecar.logs()


def test_json_log_lines_with_the_worker_index(tmp_path: Path, procs: list[Proc]) -> None:
    text = _run(tmp_path, procs, "--workers", "2", "--log-format", "json")
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert entries, text
    for e in entries:
        assert {"time", "level", "logger", "message", "worker"} <= e.keys(), e
        assert e["time"].endswith("Z") and e["level"] in {"debug", "info", "warning", "error"}
    assert {e["worker"] for e in entries} == {0, 1, "supervisor"}, entries
    assert any(e["message"].startswith("sidecar ready") for e in entries if e["worker"] == 1)


def test_text_logs_say_which_worker(tmp_path: Path, procs: list[Proc]) -> None:
    text = _run(tmp_path, procs, "--workers", "2")
    lines = [line for line in text.splitlines() if " INFO " in line]
    assert any("[worker 0] " in line and "sidecar ready" in line for line in lines), text
    assert any("[worker 1] " in line and "sidecar ready" in line for line in lines), text
    with_one = _run(tmp_path, procs)  # one process: the text as it always was
    assert "sidecar ready" in with_one and "[worker" not in with_one
    assert not with_one.lstrip().startswith("{")
