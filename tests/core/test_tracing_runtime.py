"""The runtime owns the tracer: kept across reloads that keep its config, replaced
(and the old one flushed and stopped) when the config changes, closed with the runtime."""

from __future__ import annotations

import time
from pathlib import Path

from plait.core.config import load_config
from plait.core.config._model import MeshConfig
from plait.core.runtime import Runtime
from plait.core.tracing import Tracing
from plait.plugins import load_filter_types

BASE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9001}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app}
spec:
  egress: [{port: {number: 18080}, service: echo}]
"""


def _config(tmp_path: Path, tracing: str) -> MeshConfig:
    path = tmp_path / "mesh.yaml"
    path.write_text(BASE + (f"  tracing: {tracing}\n" if tracing else ""))
    return load_config([path], load_filter_types())


def test_tracer_follows_the_config(tmp_path: Path) -> None:
    a = "{sampling: 5, otlp: {endpoint: 'http://127.0.0.1:9'}}"
    rt = Runtime(_config(tmp_path, a))
    first = rt.tracing
    assert first is not None and rt.listener("outbound|18080").tracing is first  # type: ignore[union-attr]
    rt.apply(_config(tmp_path, a))
    assert rt.tracing is first  # same config: same tracer, nothing lost
    rt.apply(_config(tmp_path, a.replace("5", "50")))
    second = rt.tracing
    assert second is not None and second is not first and second.config.sampling == 50
    deadline = time.monotonic() + 5
    assert isinstance(first, Tracing)
    while not first._closed and time.monotonic() < deadline:  # closed on its own thread
        time.sleep(0.01)
    assert first._closed
    rt.apply(_config(tmp_path, ""))
    lis = rt.listener("outbound|18080")
    assert lis is not None and lis.tracing is None
    assert rt.tracing is None
    rt.close()
