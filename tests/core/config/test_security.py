"""PeerAuthentication and AuthorizationPolicy: parsing, errors, which policy applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import ListenerConfig, MeshConfig, MtlsMode, load_config
from plait.filters.authz import AuthzConfig
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError


def sidecar(name: str = "web", ns: str = "shop", labels: str = "{app: web}") -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  ingress:
  - name: in
    port: {{number: 15006, protocol: http}}
    defaultEndpoint: 127.0.0.1:8080
  - name: in-tcp
    port: {{number: 15007, protocol: tcp}}
    defaultEndpoint: 127.0.0.1:5432
"""


def pa(name: str, ns: str, mode: str, selector: str = "", ports: str = "") -> str:
    return f"""---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec:
{selector}  mtls: {{mode: {mode}}}
{ports}"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def load(tmp_path: Path, types: FilterTypes, text: str) -> MeshConfig:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return load_config([path], types)


def inbound(cfg: MeshConfig, name: str = "in") -> ListenerConfig:
    return next(lis for lis in cfg.listeners if lis.name == name)


def test_no_policy_leaves_the_mode_unset(tmp_path: Path, types: FilterTypes) -> None:
    assert inbound(load(tmp_path, types, sidecar())).mtls is None


def test_mesh_namespace_and_workload_levels(tmp_path: Path, types: FilterTypes) -> None:
    mesh = pa("default", "plait-system", "STRICT")
    cfg = load(tmp_path, types, sidecar() + mesh)
    assert inbound(cfg).mtls is MtlsMode.STRICT and inbound(cfg, "in-tcp").mtls is MtlsMode.STRICT
    space = pa("ns", "shop", "PERMISSIVE")
    assert inbound(load(tmp_path, types, sidecar() + mesh + space)).mtls is MtlsMode.PERMISSIVE
    sel = "  selector: {matchLabels: {app: web}}\n"
    workload = pa("web", "shop", "DISABLE", sel)
    cfg = load(tmp_path, types, sidecar() + mesh + space + workload)
    assert inbound(cfg).mtls is MtlsMode.DISABLE
    # A selector that does not match, or another namespace's policy, does not apply.
    other = pa("db", "shop", "DISABLE", "  selector: {matchLabels: {app: db}}\n")
    assert inbound(load(tmp_path, types, sidecar() + space + other)).mtls is MtlsMode.PERMISSIVE
    assert inbound(load(tmp_path, types, sidecar() + pa("x", "billing", "STRICT"))).mtls is None


def test_unset_inherits_and_port_level_wins(tmp_path: Path, types: FilterTypes) -> None:
    sel = "  selector: {matchLabels: {app: web}}\n"
    ports = "  portLevelMtls:\n    15007: {mode: PERMISSIVE}\n"
    text = sidecar() + pa("ns", "shop", "DISABLE") + pa("web", "shop", "STRICT", sel, ports)
    cfg = load(tmp_path, types, text)
    assert inbound(cfg).mtls is MtlsMode.STRICT
    assert inbound(cfg, "in-tcp").mtls is MtlsMode.PERMISSIVE
    unset = pa("web", "shop", "UNSET", sel)
    assert inbound(load(tmp_path, types, sidecar() + pa("ns", "shop", "STRICT") + unset)).mtls is (
        MtlsMode.STRICT
    )


@pytest.mark.parametrize(
    ("doc", "field", "expected"),
    [
        (pa("p", "shop", "MUTUAL"), "spec.mtls.mode", "STRICT, PERMISSIVE, DISABLE, UNSET"),
        (pa("p", "shop", "STRICT", "", "  portLevelMtls: {80: {mode: STRICT}}\n"),
         "spec.portLevelMtls", "needs a selector"),
        (pa("p", "shop", "STRICT", "  selector: {matchLabels: {a: b}}\n",
            "  portLevelMtls: {http: {mode: STRICT}}\n"), "spec.portLevelMtls.http", "port"),
    ],
)  # fmt: skip
def test_invalid_peer_authentication(
    tmp_path: Path, types: FilterTypes, doc: str, field: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, types, sidecar() + doc)
    assert "mesh.yaml" in err.value.file
    assert f"PeerAuthentication/p: {field}" in err.value.field
    assert expected in err.value.message


AUTHZ = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-front, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {principals: ["plait.local/ns/shop/sa/front"]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-plain, namespace: plait-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: billing}
spec:
  action: DENY
  rules: [{}]
"""


def test_authorization_filter_goes_first_on_inbound_listeners(
    tmp_path: Path, types: FilterTypes
) -> None:
    cfg = load(tmp_path, types, sidecar() + AUTHZ)
    entry = inbound(cfg).filters[0]
    assert entry.type == "authorization"
    assert isinstance(entry.config, AuthzConfig)
    assert [p.name for p in entry.config.allow] == ["shop/allow-front"]
    assert [p.name for p in entry.config.deny] == ["plait-system/deny-plain"]  # not billing's
    # on a tcp listener it is the one connection filter, with the same policies
    assert [f.type for f in inbound(cfg, "in-tcp").filters] == ["authorization"]
    assert inbound(cfg, "in-tcp").filters[0].config == entry.config


def test_no_applicable_policy_adds_no_filter(tmp_path: Path, types: FilterTypes) -> None:
    cfg = load(tmp_path, types, sidecar(labels="{app: db}") + "---\n" + AUTHZ.split("---\n")[1])
    assert inbound(cfg).filters == ()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("action: DENY\n  rules: [{from", "action: REJECT\n  rules: [{from", "spec.action"),
        ('paths: ["/api/*"]', 'paths: ["api"]', "spec.rules[0].to[0].operation.paths[0]"),
        ("methods: [GET]", "methods: [get]", "spec.rules[0].to[0].operation.methods[0]"),
        ("principals: [", "principal: [", "spec.rules[0].from[0].source.principal"),
        ('["plait.local/ns/shop/sa/front"]', '["a*b"]',
         "spec.rules[0].from[0].source.principals[0]"),
    ],
)  # fmt: skip
def test_invalid_authorization_policy_names_file_and_field(
    tmp_path: Path, types: FilterTypes, old: str, new: str, field: str
) -> None:
    assert old in AUTHZ
    with pytest.raises(ConfigError) as err:
        load(tmp_path, types, sidecar() + AUTHZ.replace(old, new, 1))
    assert "mesh.yaml:" in err.value.file
    assert err.value.field.endswith(field), err.value.field
