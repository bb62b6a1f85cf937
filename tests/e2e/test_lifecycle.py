"""Graceful drain on SIGTERM, admin endpoints, --workers, and a port in use at start."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    PY,
    Proc,
    free_port,
    http_get,
    simple_config,
    start_echo,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e


@pytest.mark.soak
def test_sigterm_finishes_in_flight_refuses_new_and_exits_in_grace(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    text = simple_config(echo.port, port, admin) + "  drainTimeout: 4s\n"
    sidecar = start_sidecar(write_config(tmp_path, text), admin)
    procs.append(sidecar)
    results: list[int] = []

    def slow() -> None:
        results.append(http_get(port, "/delay/1.0", timeout=10)[0])

    threads = [threading.Thread(target=slow) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    sidecar.popen.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    for t in threads:
        t.join(10)
    code = sidecar.popen.wait(10)
    elapsed = time.monotonic() - t0
    assert results == [200] * 20
    assert code == 0
    assert elapsed < 4.0 + 1.5


def test_sigterm_with_stuck_request_exits_at_grace(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    text = simple_config(echo.port, port, admin) + "  drainTimeout: 1s\n"
    sidecar = start_sidecar(write_config(tmp_path, text), admin)
    procs.append(sidecar)
    t = threading.Thread(target=lambda: _swallow(port))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    sidecar.popen.send_signal(signal.SIGTERM)
    assert sidecar.popen.wait(10) == 0
    assert 0.8 < time.monotonic() - t0 < 3.0
    t.join(15)


def _samples(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for fam in text_string_to_metric_families(metrics)
        for s in fam.samples
        if s.name == name
    ]


def _total(metrics: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with these labels (PromQL's ``sum``)."""
    return sum(
        v for got, v in _samples(metrics, name) if all(got[k] == x for k, x in labels.items())
    )


def _swallow(port: int) -> None:
    with contextlib.suppress(OSError):
        http_get(port, "/delay/8", timeout=12)


def test_admin_endpoints(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    procs.append(sidecar)
    for _ in range(5):
        http_get(port, "/")
    http_get(port, "/status/503")
    assert http_get(admin, "/ready")[0] == 200
    metrics = http_get(admin, "/metrics")[2].decode()
    assert _total(metrics, "plait_requests_total", code="200", listener="out", reason="") == 5
    assert _total(metrics, "plait_requests_total", code="503", listener="out", reason="") == 1
    assert _total(metrics, "plait_request_duration_seconds_count", listener="out") == 6
    assert "plait_connections_active" in metrics
    dump = json.loads(http_get(admin, "/config_dump")[2])
    assert dump["version"] and dump["last_error"] is None
    assert dump["config"]["listeners"][0]["port"] == port


def test_two_workers_share_the_port_and_report_summed_metrics(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    sidecar = start_sidecar(
        write_config(tmp_path, simple_config(echo.port, port, admin)), admin, "--workers", "2"
    )
    procs.append(sidecar)
    statuses = {http_get(port, f"/{i}")[0] for i in range(50)}  # a new connection each
    assert statuses == {200}
    dump = json.loads(http_get(admin, "/config_dump")[2])
    pids = {w["pid"] for w in dump["workers"]}
    assert len(pids) == 2
    metrics = http_get(admin, "/metrics")[2].decode()
    # 50 requests spread over two processes, summed by the supervisor
    assert _total(metrics, "plait_requests_total", code="200", listener="out", reason="") == 50
    assert _total(metrics, "plait_request_duration_seconds_count", listener="out") == 50
    assert len(_samples(metrics, "plait_requests_total")) == 1  # one label set, not one a worker
    sidecar.popen.send_signal(signal.SIGTERM)
    assert sidecar.popen.wait(15) == 0


@contextlib.contextmanager
def _held_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield port


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "ExceptionGroup" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("plait", "error:"))]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("which", ["listener", "admin"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path, which: str) -> None:
    with _held_port() as taken:
        port, admin = (taken, free_port()) if which == "listener" else (free_port(), taken)
        cfg = write_config(tmp_path, simple_config(free_port(), port, admin))
        r = subprocess.run(
            [PY, "-m", "plait.core.ops.cli", "sidecar", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    line = _one_line_error(r)
    assert f"127.0.0.1:{taken}" in line and "in use" in line, line
    assert ("listener 'out'" if which == "listener" else "admin") in line


@pytest.mark.parametrize("which", ["api", "xds"])
def test_a_control_plane_port_in_use_is_one_line_naming_it(tmp_path: Path, which: str) -> None:
    with _held_port() as taken:
        api, xds = (taken, free_port()) if which == "api" else (free_port(), taken)
        r = subprocess.run(
            [PY, "-m", "plait.core.ops.cli", "control-plane", "--data-dir", str(tmp_path / "cp"),
             "--api-port", str(api), "--xds-port", str(xds)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    line = _one_line_error(r)
    assert f"127.0.0.1:{taken}" in line and "in use" in line, line
    assert ("API" if which == "api" else "xDS") in line
