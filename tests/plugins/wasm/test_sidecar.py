"""End to end: a real sidecar process with wasm filters in its chain, real HTTP/1.1 clients
and upstream on loopback."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._h2client import h2_request
from tests.support import (
    Proc,
    free_port,
    http_get,
    simple_config,
    start_echo,
    start_mesh,
    start_sidecar,
    write_config,
)

from .conftest import AS_MODULE
from .wat import build

pytestmark = pytest.mark.e2e
SUFFIX = b"[wasm-response]"  # the body module appends it to every response body


def _echo(body: bytes) -> dict[str, Any]:
    assert body.endswith(SUFFIX), body
    echo: dict[str, Any] = json.loads(body[: -len(SUFFIX)])
    return echo


def test_sidecar_runs_sdk_and_wat_filters(tmp_path: Path, procs: list[Proc]) -> None:
    body_module = build("body", tmp_path)
    trap_module = build("trap", tmp_path)
    cache = tmp_path / "cache"
    filters = (
        "["
        f"{{type: wasm, config: {{module: '{AS_MODULE}', rootId: plait_headers,"
        f" pluginConfig: e2e-config, cacheDir: '{cache}'}}}},"
        f"{{type: wasm, config: {{module: '{body_module}', cacheDir: '{cache}'}}}},"
        f"{{type: wasm, config: {{module: '{trap_module}', cacheDir: '{cache}',"
        " callbackTimeoutMs: 50}}"
        "]"
    )
    port, sidecar = start_mesh(tmp_path, procs, filters=filters)

    status, headers, body = http_get(port, "/ok")
    assert status == 200, sidecar.logs()
    echoed = _echo(body)["headers"]
    assert echoed["x-plait-wasm"] == "as"
    assert echoed["x-count"] == "1"
    assert headers["x-plait-config"] == "e2e-config"

    status, headers, body = http_get(port, "/deny")
    assert (status, body) == (403, b"denied\n")
    assert headers["x-denied-by"] == "plait-as"

    status, headers, body = http_get(port, "/echo", method="POST", body=b"hello")
    assert status == 200
    echo = _echo(body)
    assert echo["body"] == "[wasm]hello"
    assert echo["headers"]["x-body-seen"] == "yes"
    assert int(headers.get("content-length", len(body))) == len(body)

    # HTTP/2: the body arrives in its own DATA frame, after the headers the module paused
    head, body, _ = h2_request(port, [("content-type", "text/plain")], b"over h2", path="/h2")
    assert head[":status"] == "200"
    echo = _echo(body)
    assert echo["body"] == "[wasm]over h2"
    assert echo["headers"]["x-body-seen"] == "yes" and echo["headers"]["x-plait-wasm"] == "as"

    status, _, body = http_get(port, "/stream/3")
    assert status == 200
    assert body == b"chunk 0\nchunk 1\nchunk 2\n[wasm-response]"

    started = time.monotonic()
    status, headers, _ = http_get(port, "/loop", headers={"x-loop": "1"})
    assert status == 503
    assert headers["x-plait-reason"] == "wasm filter trap failed"
    assert time.monotonic() - started < 5
    status, _, body = http_get(port, "/after")
    assert status == 200
    assert _echo(body)["headers"]["x-count"] == "1"  # a fresh instance
    assert "exceeded its CPU time limit" in sidecar.logs()
    assert sidecar.stop() == 0, sidecar.logs()  # a clean exit, with instances still alive


def test_streamed_request_body_rewritten_after_its_end(tmp_path: Path, procs: list[Proc]) -> None:
    module = build("reqbody", tmp_path)
    filters = f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{tmp_path}/cache'}}}}]"
    port, _ = start_mesh(tmp_path, procs, filters=filters)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello")
        time.sleep(0.2)  # the head and the first chunk go upstream's way before the rest
        s.sendall(b"world")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echo = json.loads(body)
    assert echo["body"] == "[wasm]helloworld"
    assert echo["headers"].get("transfer-encoding") == "chunked"


def test_reload_refuses_a_configuration_the_module_rejects(
    tmp_path: Path, procs: list[Proc]
) -> None:
    module = build("config", tmp_path)
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()

    def config(plugin_config: str) -> str:
        entry = f"{{type: wasm, config: {{module: '{module}', pluginConfig: {plugin_config},"
        entry += f" cacheDir: '{tmp_path}/cache'}}}}"
        return simple_config(echo.port, port, admin, filters=f"[{entry}]")

    cfg = write_config(tmp_path, config("v1"))
    sidecar = start_sidecar(cfg, admin, "--no-watch")
    procs.append(sidecar)
    assert http_get(port, "/")[1]["x-plugin-config"] == "v1"

    cfg.write_text(config("reject"))
    sidecar.popen.send_signal(signal.SIGHUP)
    deadline, error = time.monotonic() + 5, None
    while error is None and time.monotonic() < deadline:
        error = json.loads(http_get(admin, "/config_dump")[2])["last_error"]
        time.sleep(0.05)
    assert "proxy_on_configure returned false" in str(error)
    assert "filters[0].config.pluginConfig" in str(error)
    assert http_get(port, "/")[1]["x-plugin-config"] == "v1"  # the last good chain serves

    cfg.write_text(config("v2"))
    sidecar.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while http_get(port, "/")[1].get("x-plugin-config") != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http_get(port, "/")[1]["x-plugin-config"] == "v2"
