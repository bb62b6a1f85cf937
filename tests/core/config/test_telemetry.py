"""Telemetry: parsing, errors, and which level's access log and tracing a sidecar gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import MeshConfig, TracingConfig, load_config
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError


def sidecar(name: str, ns: str, labels: str, extra: str = "") -> str:
    return f"""---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  ingress:
  - name: in
    port: {{number: 15006, protocol: http}}
    defaultEndpoint: 127.0.0.1:8080
{extra}"""


MESH = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: plait-system}
spec:
  extensionProviders:
  - name: otel
    opentelemetry: {endpoint: "http://127.0.0.1:4318"}
  - name: otel-grpc
    opentelemetry: {endpoint: "http://127.0.0.1:4317", protocol: grpc}
  - name: file
    envoyFileAccessLog: {path: /var/log/plait/access.log}
  accessLogging: [{providers: [{name: file}], sampling: 10}]
  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100}]
"""
SHOP_NO_TRACING = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: shop}
spec:
  tracing: [{disableSpanReporting: true}]
"""
WEB_OWN = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  accessLogging: [{providers: [{name: envoy}]}]
  tracing: [{disableSpanReporting: false, providers: [{name: otel-grpc}]}]
"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def build(tmp_path: Path, types: FilterTypes, text: str, name: str) -> MeshConfig:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return load_config([path], types, sidecar=name)


def test_no_telemetry_keeps_the_sidecars_own_settings(tmp_path: Path, types: FilterTypes) -> None:
    own = "  accessLog: {path: /tmp/own.log}\n"
    cfg = build(tmp_path, types, sidecar("web", "shop", "{app: web}", own), "web")
    assert cfg.access_log == "/tmp/own.log" and cfg.access_log_sampling == 100.0
    assert cfg.tracing is None


def test_mesh_namespace_and_workload_levels(tmp_path: Path, types: FilterTypes) -> None:
    text = (
        sidecar("web", "shop", "{app: web}")
        + sidecar("cart", "shop", "{app: cart}")
        + sidecar("pay", "billing", "{app: pay}", "  accessLog: {path: /tmp/own.log}\n")
        + MESH
        + SHOP_NO_TRACING
        + WEB_OWN
    )
    pay = build(tmp_path, types, text, "pay.billing")  # mesh-wide only: overrides the Sidecar
    assert pay.access_log == "/var/log/plait/access.log" and pay.access_log_sampling == 10.0
    assert pay.tracing == TracingConfig(
        endpoint="http://127.0.0.1:4318", sampling=100.0, service="pay.billing"
    )
    cart = build(tmp_path, types, text, "cart.shop")  # the namespace turns tracing off
    assert cart.tracing is None and cart.access_log == "/var/log/plait/access.log"
    web = build(tmp_path, types, text, "web.shop")  # the workload turns it back on, elsewhere
    assert web.access_log == "/dev/stdout" and web.access_log_sampling == 10.0  # inherited
    assert web.tracing == TracingConfig(
        endpoint="http://127.0.0.1:4317", protocol="grpc", sampling=100.0, service="web.shop"
    )


def test_access_logging_disabled_turns_the_sidecars_log_off(
    tmp_path: Path, types: FilterTypes
) -> None:
    off = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs-off, namespace: shop}
spec:
  accessLogging: [{disabled: true}]
"""
    text = sidecar("web", "shop", "{app: web}", "  accessLog: {path: /tmp/own.log}\n") + off
    assert build(tmp_path, types, text, "web").access_log is None


BAD = [
    ("  metrics: [{}]\n", "spec.metrics", "not configurable"),
    ("  accessLogging: [{sampling: 101}]\n", "spec.accessLogging[0].sampling", "0 to 100"),
    ("  accessLogging: [{}, {}]\n", "spec.accessLogging", "one entry"),
    ("  accessLogging: [{filter: {expression: x}}]\n", "spec.accessLogging[0].filter",
     "unknown field"),
    ("  tracing: [{randomSamplingPercentage: high}]\n",
     "spec.tracing[0].randomSamplingPercentage", "0 to 100"),
    ("  tracing: [{disabled: maybe}]\n", "spec.tracing[0].disabled", "true or false"),
    ("  tracing: [{providers: [{name: nope}]}]\n", "spec.tracing[0].providers",
     "provider 'nope' is not declared"),
    ("  tracing: [{providers: [{name: envoy}]}]\n", "spec.tracing[0].providers",
     "is of another kind"),
    ("  tracing: [{randomSamplingPercentage: 5}]\n", "spec.tracing[0].providers",
     "needs an opentelemetry provider"),
    ("  extensionProviders: [{name: x, envoyFileAccessLog: {path: /x}}]\n",
     "spec.extensionProviders[0]", "mesh-wide Telemetry"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "expected"), BAD)
def test_invalid_telemetry_names_file_field_and_expectation(
    tmp_path: Path, types: FilterTypes, spec: str, field: str, expected: str
) -> None:
    doc = f"""---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: t, namespace: shop}}
spec:
{spec}"""
    with pytest.raises(ConfigError) as err:
        build(tmp_path, types, sidecar("web", "shop", "{app: web}") + doc, "web")
    assert "mesh.yaml" in err.value.file
    assert f"Telemetry/t: {field}" in err.value.field, err.value
    assert expected in err.value.message, err.value


def test_an_uncovered_telemetry_is_checked_too(tmp_path: Path, types: FilterTypes) -> None:
    doc = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: elsewhere}
spec:
  accessLogging: [{providers: [{name: missing}]}]
"""
    with pytest.raises(ConfigError, match="provider 'missing' is not declared"):
        build(tmp_path, types, sidecar("web", "shop", "{app: web}") + doc, "web")
