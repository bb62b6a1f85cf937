"""A sidecar in control-plane mode is ready only with a config active and its listeners bound."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    apply,
    config_dump,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _mesh(upstream: int, listen: int, stamp: str = "v1") -> str:
    entry = "{type: response-header-modifier, config: {set: [{name: x-stamp, value: %s}]}}"
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: backend}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {upstream}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - name: out
    port: {{number: {listen}, protocol: http}}
    service: backend
    filters: [{entry % stamp}]
"""


def test_a_sidecar_whose_first_listener_is_nacked_is_not_ready(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    taken = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", taken))
    busy.listen()
    try:
        apply(cp, tmp_path, _mesh(echo.port, taken))
        sidecar = start_xds_sidecar(tmp_path, cp, "client", wait=False)
        procs.append(sidecar)
        wait_for(lambda: config_dump(sidecar)["xds"]["last_nack"], timeout=20)
        dump = config_dump(sidecar)
        assert f"listener 'out' cannot listen on 127.0.0.1:{taken}" in dump["xds"]["last_nack"]
        assert dump["config"]["listeners"] == []  # the refused config is not the active one
        assert http_get(sidecar.admin_port, "/ready")[0] == 503
        assert "config active" not in sidecar.logs()
        assert "sidecar ready" not in sidecar.logs()
    finally:
        busy.close()
    # A sidecar whose config binds: ready, and its ready line names the active version.
    listen = free_port()
    apply(cp, tmp_path, _mesh(echo.port, listen, "v2"))
    other = start_xds_sidecar(tmp_path, cp, "client")
    procs.append(other)
    version = config_dump(other)["version"]
    assert version
    ready = [ln for ln in other.logs().splitlines() if "sidecar ready" in ln]
    assert len(ready) == 1 and f"config {version}" in ready[0], ready
    assert f"out 127.0.0.1:{listen}" in ready[0]
    assert http_get(listen, "/")[1]["x-stamp"] == "v2"
