"""Workload resources, in-memory YAML and the control plane's unknown-filter mode."""

from __future__ import annotations

import pytest

from plait.core.config import parse_text, resources_of, translate
from plait.plugins import load_filter_types
from plait.sdk import ConfigError

SERVICE = """
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 8080}, {name: admin, port: 9090}]
  endpoints: [{address: 127.0.0.1, port: 9001}]
"""


def _translate(text: str, *, unknown: bool = False) -> object:
    parsed = parse_text(text, "mem.yaml")
    return translate(
        resources_of(parsed, ["mem.yaml"]), load_filter_types(), unknown_filters=unknown
    )


def _workload(spec: str) -> str:
    return (
        SERVICE
        + "---\napiVersion: plait.dev/v1alpha1\nkind: Workload\n"
        + f"metadata: {{name: web-1}}\nspec: {spec}\n"
    )


def test_workload_endpoints_join_the_clusters_of_their_service() -> None:
    cfg = _translate(_workload(
        "{service: web, address: 10.0.0.7, labels: {version: v2}, weight: 3, "
        "ports: [{port: 8080, targetPort: 15006}]}"
    ))  # fmt: skip
    web = cfg.clusters["web.default:8080"]  # type: ignore[attr-defined]
    assert [(e.address, e.port, e.weight, dict(e.labels)) for e in web.endpoints] == [
        ("127.0.0.1", 9001, 1, {}),
        ("10.0.0.7", 15006, 3, {"version": "v2"}),
    ]
    # the workload serves only port 8080
    assert len(cfg.clusters["web.default:9090"].endpoints) == 1  # type: ignore[attr-defined]


def test_a_workload_without_ports_serves_every_service_port_on_the_same_number() -> None:
    cfg = _translate(_workload("{service: web, address: 10.0.0.7}"))
    assert cfg.clusters["web.default:9090"].endpoints[-1].port == 9090  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{service: nope, address: 10.0.0.7}", "spec.service: unknown Service default/nope"),
        ("{service: web, address: 10.0.0.7, ports: [{port: 1234}]}", "has no port 1234"),
        ("{service: web}", "missing required field 'address'"),
        ("{service: web, address: 10.0.0.7, weight: 0}", "spec.weight"),
    ],
)
def test_invalid_workloads_are_rejected_naming_the_field(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _translate(_workload(spec))
    assert "mem.yaml:" in str(err.value)
    assert "Workload/web-1" in str(err.value)
    assert message in str(err.value)


SIDECAR = """---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: a}
spec:
  egress:
  - port: {number: 18080}
    service: web
    filters:
    - {type: not-installed-here, config: {limit: 3}}
    - {type: request-header-modifier, config: {set: [{name: x-a, value: "1"}]}}
"""


def test_unknown_filter_types_are_errors_unless_the_control_plane_asks() -> None:
    with pytest.raises(ConfigError, match="unknown filter type 'not-installed-here'"):
        _translate(SERVICE + SIDECAR)
    cfg = _translate(SERVICE + SIDECAR, unknown=True)
    opaque, known = cfg.listeners[0].filters  # type: ignore[attr-defined]
    assert (opaque.known, opaque.type, opaque.raw_config) == (
        False,
        "not-installed-here",
        {"limit": 3},
    )
    assert known.known and known.type == "request-header-modifier"
    assert known.raw_config == {"set": [{"name": "x-a", "value": "1"}]}


def test_known_filter_configs_are_still_checked_in_unknown_filter_mode() -> None:
    bad = SIDECAR.replace('{set: [{name: x-a, value: "1"}]}', "{set: 7}")
    with pytest.raises(ConfigError, match="filters\\[1\\]"):
        _translate(SERVICE + bad, unknown=True)


def test_parse_text_keeps_plain_documents_and_creation_order() -> None:
    parsed = parse_text(SERVICE + SIDECAR, "mem.yaml", order=5)
    assert [(p.meta.kind, p.meta.order) for p in parsed] == [("Service", 5), ("Sidecar", 6)]
    assert type(parsed[0].document) is dict
    assert parsed[0].document["spec"]["ports"][0] == {"port": 8080}


def test_workload_endpoints_carry_their_spiffe_id_and_tls_mode() -> None:
    text = _workload(
        "{service: web, serviceAccount: web-sa, address: 10.0.0.7, tlsMode: mutual}"
    ) + (
        "---\napiVersion: plait.dev/v1alpha1\nkind: Workload\n"
        "metadata: {name: vm-1, namespace: default}\n"
        "spec: {service: web, address: 10.0.0.8}\n"
    )
    parsed = parse_text(text, "mem.yaml")
    cfg = translate(
        resources_of(parsed, ["mem.yaml"]), load_filter_types(), trust_domain="corp.example"
    )
    eps = cfg.clusters["web.default:8080"].endpoints
    assert [(e.address, e.identity, e.mtls) for e in eps] == [
        ("127.0.0.1", None, False),  # a static Service endpoint has no mesh identity
        ("10.0.0.7", "spiffe://corp.example/ns/default/sa/web-sa", True),
        ("10.0.0.8", "spiffe://corp.example/ns/default/sa/default", False),
    ]
    default_domain = _translate(_workload("{service: web, address: 10.0.0.7}"))
    ep = default_domain.clusters["web.default:8080"].endpoints[-1]  # type: ignore[attr-defined]
    assert ep.identity == "spiffe://plait.local/ns/default/sa/default"


def test_an_unknown_tls_mode_is_rejected_naming_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        _translate(_workload("{service: web, address: 10.0.0.7, tlsMode: strict}"))
    assert "spec.tlsMode: expected one of disabled, mutual, got 'strict'" in str(err.value)
