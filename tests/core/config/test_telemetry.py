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


def _metrics_by_direction(cfg: MeshConfig) -> dict[str, bool]:
    return {lis.direction.value: lis.request_metrics for lis in cfg.listeners}


def test_metrics_overrides_turn_request_metrics_off_per_direction_and_level(
    tmp_path: Path, types: FilterTypes
) -> None:
    egress = "  egress:\n  - port: {number: 15001, protocol: http}\n    service: up\n"
    service = """---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: up, namespace: shop}
spec:
  ports: [{name: http, port: 80, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9}]
"""
    mesh_off = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: plait-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides: [{disabled: true}]
"""
    server_on = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  metrics:
  - overrides:
    - {match: {metric: ALL_METRICS, mode: CLIENT_AND_SERVER}, disabled: false}
    - {match: {mode: CLIENT}, disabled: true}
"""
    text = (
        service
        + sidecar("web", "shop", "{app: web}", egress)
        + sidecar("cart", "shop", "{app: cart}", egress)
    )
    assert _metrics_by_direction(build(tmp_path, types, text, "web")) == {
        "inbound": True, "outbound": True,
    }  # fmt: skip
    text += mesh_off + server_on
    cart = build(tmp_path, types, text, "cart")  # the mesh-wide override: both off
    assert _metrics_by_direction(cart) == {"inbound": False, "outbound": False}
    web = build(tmp_path, types, text, "web")  # the workload's: on, then CLIENT off again
    assert _metrics_by_direction(web) == {"inbound": True, "outbound": False}


BAD = [
    ("  metrics: [{}, {}]\n", "spec.metrics", "one entry"),
    ("  metrics: [{providers: [{name: statsd}]}]\n", "spec.metrics[0].providers[0].name",
     "one of prometheus"),
    ("  metrics: [{overrides: [{match: {metric: REQUEST_COUNT}, disabled: true}]}]\n",
     "spec.metrics[0].overrides[0].match.metric", "one of ALL_METRICS"),
    ("  metrics: [{overrides: [{match: {mode: BOTH}}]}]\n",
     "spec.metrics[0].overrides[0].match.mode", "one of CLIENT_AND_SERVER, CLIENT, SERVER"),
    ("  metrics: [{overrides: [{disabled: yes please}]}]\n",
     "spec.metrics[0].overrides[0].disabled", "true or false"),
    ("  metrics: [{overrides: [{tagOverrides: {x: {value: y}}}]}]\n",
     "spec.metrics[0].overrides[0].tagOverrides", "unknown field"),
    ("  metrics: [{reportingInterval: 5s}]\n", "spec.metrics[0].reportingInterval",
     "unknown field"),
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
