"""Filters attached by selector (a ``Filter`` with ``selector``), and filter versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import ListenerConfig, MeshConfig, load_config
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

SIDECAR = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: http, port: 80, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9000}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  ingress:
  - name: in
    port: {number: 15006, protocol: http}
    defaultEndpoint: 127.0.0.1:8080
    filters: [{type: request-header-modifier, name: own, config: {set: [{name: x-a, value: b}]}}]
  - name: in-tcp
    port: {number: 15007, protocol: tcp}
    defaultEndpoint: 127.0.0.1:5432
  egress:
  - name: out
    port: {number: 18080, protocol: http}
    service: api
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"""


def attached(name: str, extra: str = "", ns: str = "shop", version: str = "") -> str:
    pinned = f", version: '{version}'" if version else ""
    return f"""---
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: {name}, namespace: {ns}}}
spec:
  python: {{type: example-stamp{pinned}}}
  config: {{value: {name}}}
{extra}"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def load(tmp_path: Path, types: FilterTypes, text: str) -> MeshConfig:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return load_config([path], types, sidecar="web.shop")


def chain(cfg: MeshConfig, listener: str) -> list[str]:
    lis: ListenerConfig = next(x for x in cfg.listeners if x.name == listener)
    return [f.name for f in lis.filters]


def test_phases_and_priorities_place_filters_around_the_listeners_own(
    tmp_path: Path, types: FilterTypes
) -> None:
    text = SIDECAR + "".join(
        attached(name, extra)
        for name, extra in [
            ("late", "  selector: {}\n"),
            ("stats", "  selector: {matchLabels: {app: web}}\n  phase: STATS\n"),
            ("authz-low", "  selector: {}\n  phase: AUTHZ\n  priority: 1\n"),
            ("authz-high", "  selector: {}\n  phase: AUTHZ\n  priority: 10\n"),
            ("authn", "  selector: {}\n  phase: AUTHN\n"),
        ]
    )
    cfg = load(tmp_path, types, text)
    assert chain(cfg, "in") == [
        "authn",
        "authz-high",
        "authz-low",
        "authorization",  # the AuthorizationPolicies' own filter
        "stats",
        "own",
        "late",
    ]
    assert chain(cfg, "out") == ["authn", "authz-high", "authz-low", "stats", "late"]
    # a tcp listener takes only connection filters: of these, the authorization policies
    assert chain(cfg, "in-tcp") == ["authorization"]


def test_selector_mode_and_ports_limit_where_a_filter_goes(
    tmp_path: Path, types: FilterTypes
) -> None:
    text = SIDECAR + "".join(
        attached(name, extra)
        for name, extra in [
            ("other-app", "  selector: {matchLabels: {app: billing}}\n"),
            ("server", "  selector: {}\n  match: [{mode: SERVER}]\n"),
            ("client", "  selector: {}\n  match: [{mode: CLIENT}]\n"),
            ("port-18080", "  selector: {}\n  match: [{ports: [{number: 18080}]}]\n"),
            ("named-only", ""),
        ]
    )
    text += attached("mesh-wide", "  selector: {}\n", ns="plait-system")
    text += attached("other-ns", "  selector: {}\n", ns="billing")
    cfg = load(tmp_path, types, text)
    assert chain(cfg, "in") == ["authorization", "own", "mesh-wide", "server"]
    assert chain(cfg, "out") == ["mesh-wide", "client", "port-18080"]  # by namespace, name


def test_attachment_fields_without_a_selector_are_an_error(
    tmp_path: Path, types: FilterTypes
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, types, SIDECAR + attached("f", "  phase: AUTHN\n"))
    text = str(err.value)
    assert "mesh.yaml" in text and "Filter/f" in text and "spec.phase" in text
    assert "only a Filter with a selector" in text
    with pytest.raises(ConfigError, match=r"spec\.phase.*one of AUTHN, AUTHZ"):
        load(tmp_path, types, SIDECAR + attached("f", "  selector: {}\n  phase: FIRST\n"))


def test_a_version_the_installed_package_satisfies_is_accepted(
    tmp_path: Path, types: FilterTypes
) -> None:
    cfg = load(
        tmp_path, types, SIDECAR + attached("pinned", "  selector: {}\n", version=">=0.1,<1")
    )
    entry = next(f for f in cfg.listeners[0].filters if f.name == "pinned")
    assert entry.version == ">=0.1,<1"


def test_a_version_the_installed_package_does_not_satisfy_is_refused_with_both(
    tmp_path: Path, types: FilterTypes
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, types, SIDECAR + attached("pinned", "  selector: {}\n", version=">=2"))
    text = str(err.value)
    assert "spec.python.type" in text
    assert "plait-example-filter 0.1.0 is installed, the config asks for '>=2'" in text
    with pytest.raises(ConfigError, match="PEP 440 version specifier"):
        load(tmp_path, types, SIDECAR + attached("pinned", "  selector: {}\n", version="two"))
