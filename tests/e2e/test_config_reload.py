"""Config errors at start and on reload; hot reload under load keeps every request."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


def test_invalid_config_exits_nonzero_naming_file_and_field(tmp_path: Path) -> None:
    text = simple_config(9, free_port(), free_port()).replace("port: 80,", "port: -80,")
    cfg = write_config(tmp_path, text, "broken.yaml")
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "sidecar", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode != 0
    assert "broken.yaml" in r.stderr
    assert "Service/upstream" in r.stderr and "ports[0].port" in r.stderr


def _swap(cfg: Path, text: str) -> None:
    tmp = cfg.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, cfg)


def _versioned(upstream: int, port: int, admin: int, version: str) -> str:
    entry = "{type: response-header-modifier, config: {set: [{name: x-config, value: %s}]}}"
    return simple_config(upstream, port, admin, filters=f"[{entry % version}]")


def test_reload_rejects_invalid_config_and_keeps_the_last_good(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, _versioned(echo.port, port, admin, "v1"))
    sidecar = start_sidecar(cfg, admin, "--no-watch")
    procs.append(sidecar)
    assert http_get(port, "/")[1]["x-config"] == "v1"
    _swap(
        cfg,
        _versioned(echo.port, port, admin, "v2").replace(
            "type: response-header-modifier", "type: no-such-filter"
        ),
    )
    sidecar.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    dump: dict[str, object] = {}
    while time.monotonic() < deadline:
        dump = json.loads(http_get(admin, "/config_dump")[2])
        if dump["last_error"]:
            break
        time.sleep(0.05)
    assert "no-such-filter" in str(dump["last_error"])
    assert "plait.yaml" in str(dump["last_error"])
    assert http_get(port, "/")[1]["x-config"] == "v1"  # previous snapshot still serving
    assert "no-such-filter" in sidecar.logs()
    _swap(cfg, _versioned(echo.port, port, admin, "v3"))
    sidecar.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while http_get(port, "/")[1].get("x-config") != "v3" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http_get(port, "/")[1]["x-config"] == "v3"
    assert json.loads(http_get(admin, "/config_dump")[2])["last_error"] is None


@pytest.mark.soak
def test_hot_swap_under_load_drops_nothing(tmp_path: Path, procs: list[Proc]) -> None:
    """32 concurrent keep-alive clients for ~10 s while chain and routes swap 50 times."""
    a, b = start_echo(tmp_path, "a"), start_echo(tmp_path, "b")
    procs += [a, b]
    port, admin = free_port(), free_port()

    def config(i: int) -> str:
        # Alternate the backend (a route change) and stamp the version (a chain change).
        upstream = (a, b)[i % 2].port
        return _versioned(upstream, port, admin, f"v{i}")

    cfg = write_config(tmp_path, config(0))
    sidecar = start_sidecar(cfg, admin, "--no-watch")
    procs.append(sidecar)
    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 32

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", f"/c{n}")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(f"status {r.status}")
                counts[n] += 1
            except Exception as exc:  # any failure counts
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    t_end = time.monotonic() + 10
    swaps_seen = 0
    for i in range(1, 51):
        _swap(cfg, config(i))
        sidecar.popen.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            _, headers, body = http_get(port, "/probe")
            if headers.get("x-config") == f"v{i}":
                assert json.loads(body)["server"] == ("a", "b")[i % 2]
                swaps_seen += 1
                break
            time.sleep(0.01)
        time.sleep(max(0.0, (t_end - time.monotonic()) / (51 - i)))
    stop.set()
    for t in threads:
        t.join(15)
    assert swaps_seen == 50
    assert failures == []
    assert sum(counts) > 1000


def test_file_change_alone_reloads(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, _versioned(echo.port, port, admin, "v1"))
    procs.append(start_sidecar(cfg, admin))  # watching the file (the default)
    assert http_get(port, "/")[1]["x-config"] == "v1"
    _swap(cfg, _versioned(echo.port, port, admin, "v2"))
    deadline = time.monotonic() + 5
    while http_get(port, "/")[1].get("x-config") != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http_get(port, "/")[1]["x-config"] == "v2"


def _dump(admin: int) -> dict[str, Any]:
    return dict(json.loads(http_get(admin, "/config_dump")[2]))


def _until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _reload_lines(sidecar: Proc) -> list[str]:
    return [
        ln
        for ln in sidecar.logs().splitlines()
        if "config active" in ln or "unchanged" in ln or "config rejected" in ln
    ]


@pytest.mark.parametrize("broken", ["empty", "blank", "half-written"])
def test_a_reload_that_would_remove_every_listener_is_refused(
    tmp_path: Path, procs: list[Proc], broken: str
) -> None:
    """``: > cfg.yaml; kill -HUP PID``: the sidecar keeps serving and says why it refused."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    good = _versioned(echo.port, port, admin, "v1")
    cfg = write_config(tmp_path, good)
    sidecar = start_sidecar(cfg, admin, "--no-watch")
    procs.append(sidecar)
    version = _dump(admin)["version"]
    lines_before = len(_reload_lines(sidecar))
    text = {"empty": "", "blank": "\n# nothing yet\n", "half-written": good.split("---")[0]}
    cfg.write_text(text[broken])  # in place, as `: > cfg.yaml` or an editor mid-save does
    sidecar.popen.send_signal(signal.SIGHUP)
    _until(lambda: _dump(admin)["last_error"])
    dump = _dump(admin)
    assert "plait.yaml" in dump["last_error"]
    assert ("empty file" if broken != "half-written" else "no listeners") in dump["last_error"]
    assert dump["version"] == version
    assert http_get(port, "/")[1]["x-config"] == "v1"  # still serving the last good config
    assert len(dump["config"]["listeners"]) == 1
    _until(lambda: len(_reload_lines(sidecar)) == lines_before + 1)
    assert "config rejected, keeping" in _reload_lines(sidecar)[-1]
    # The file fixed back to the same content: the refusal is over, and the reload says so.
    cfg.write_text(good)
    sidecar.popen.send_signal(signal.SIGHUP)
    _until(lambda: _dump(admin)["last_error"] is None)
    _until(lambda: len(_reload_lines(sidecar)) == lines_before + 2)
    assert f"config {version} unchanged" in _reload_lines(sidecar)[-1]
    assert http_get(port, "/")[1]["x-config"] == "v1"


def test_an_empty_config_file_at_start_is_a_clear_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "", "empty.yaml")
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "sidecar", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1
    assert "empty.yaml" in r.stderr and "empty file" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_reload_whose_new_listener_cannot_bind_keeps_the_old_config_whole(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The old config and its listeners stay in service; one log line; ready stays 200."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, _versioned(echo.port, port, admin, "v1"))
    sidecar = start_sidecar(cfg, admin, "--no-watch")
    procs.append(sidecar)
    version = _dump(admin)["version"]
    taken = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", taken))
    busy.listen()
    extra = f"""\
  - name: second
    port: {{number: {taken}, protocol: http}}
    service: upstream
"""
    try:
        _swap(cfg, _versioned(echo.port, port, admin, "v2") + extra)
        sidecar.popen.send_signal(signal.SIGHUP)
        _until(lambda: _dump(admin)["last_error"])
        dump = _dump(admin)
        assert f"listener 'second' cannot listen on 127.0.0.1:{taken}" in dump["last_error"]
        assert dump["version"] == version
        assert http_get(port, "/")[1]["x-config"] == "v1"  # the old chain, not v2's
        assert "config active" not in sidecar.logs().split("config rejected")[-1]
        assert http_get(admin, "/ready")[0] == 200
    finally:
        busy.close()
    # The port is free now: the same file reloads.
    sidecar.popen.send_signal(signal.SIGHUP)
    _until(lambda: _dump(admin)["last_error"] is None)
    assert http_get(port, "/")[1]["x-config"] == "v2"
    assert http_get(taken, "/")[0] == 200
    assert f"second 127.0.0.1:{taken}" in _reload_lines(sidecar)[-1]


def test_a_watched_file_emptied_in_place_is_refused(tmp_path: Path, procs: list[Proc]) -> None:
    """The file watcher goes through the same reload: an emptied file takes nothing down."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    good = _versioned(echo.port, port, admin, "v1")
    cfg = write_config(tmp_path, good)
    sidecar = start_sidecar(cfg, admin)  # watching the file (the default)
    procs.append(sidecar)
    with cfg.open("w"):  # `: > cfg.yaml`
        pass
    _until(lambda: _dump(admin)["last_error"])
    assert "empty file" in _dump(admin)["last_error"]
    assert http_get(port, "/")[1]["x-config"] == "v1"
    cfg.write_text(good)
    _until(lambda: _dump(admin)["last_error"] is None)
    assert http_get(port, "/")[1]["x-config"] == "v1"
