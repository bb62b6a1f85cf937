"""``Sidecar.spec.tracing``: parsed into the mesh config, and every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import load_config
from plait.core.config._dump import dump_config
from plait.plugins import load_filter_types
from plait.sdk import ConfigError

BASE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9001}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app, namespace: shop}
spec:
  egress: [{port: {number: 18080}, service: echo}]
"""


def _load(tmp_path: Path, tracing: str) -> object:
    path = tmp_path / "mesh.yaml"
    path.write_text(BASE + (f"  tracing: {tracing}\n" if tracing else ""))
    return load_config([path], load_filter_types())


def test_tracing_is_off_unless_configured(tmp_path: Path) -> None:
    assert _load(tmp_path, "").tracing is None  # type: ignore[attr-defined]


def test_tracing_fields_and_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "{otlp: {endpoint: 'http://127.0.0.1:4318'}}")
    t = cfg.tracing  # type: ignore[attr-defined]
    assert (t.endpoint, t.sampling, t.service) == ("http://127.0.0.1:4318", 1.0, "app.shop")
    cfg = _load(tmp_path, "{sampling: 25.5, otlp: {endpoint: 'http://collector:4318'}}")
    assert cfg.tracing.sampling == 25.5  # type: ignore[attr-defined]
    dumped = dump_config(cfg)  # type: ignore[arg-type]
    assert dumped["tracing"]["otlp"] == {
        "endpoint": "http://collector:4318",
        "protocol": "http/protobuf",
    }
    cfg = _load(tmp_path, "{otlp: {endpoint: 'http://collector:4317', protocol: grpc}}")
    assert cfg.tracing.protocol == "grpc"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tracing", "field", "expected"),
    [
        ("{sampling: 101, otlp: {endpoint: 'http://c:4318'}}", "spec.tracing.sampling",
         "a percentage from 0 to 100, got 101"),
        ("{sampling: yes, otlp: {endpoint: 'http://c:4318'}}", "spec.tracing.sampling",
         "a percentage from 0 to 100"),
        ("{sampling: 1}", "spec.tracing", "missing required field 'otlp'"),
        ("{otlp: {endpoint: 'c:4318'}}", "spec.tracing.otlp.endpoint", "http://HOST:PORT"),
        ("{otlp: {endpoint: 'http://c:4318', protocol: thrift}}", "spec.tracing.otlp.protocol",
         "one of http/protobuf, grpc"),
        ("{otlp: {endpoint: 'http://c:4318'}, rate: 1}", "spec.tracing", "rate"),
    ],
)  # fmt: skip
def test_bad_tracing_config_names_file_field_and_expectation(
    tmp_path: Path, tracing: str, field: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, tracing)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "mesh.yaml")), message
    assert field in message and expected in message, message
