"""Loading YAML: files and directories, and an error for every kind of mistake.

Every error must name the file (and line), the resource, the field path and
what was expected; the bad documents are written to ``tmp_path`` so the file
name check is real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.core.config import load_config, load_documents
from plait.core.config._fields import parse_duration
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

SERVICE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9001}]
"""
SIDECAR = """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app}
spec:
  egress:
  - port: {number: 18080}
    service: echo
"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _route(rule: str, parent: str = "{name: echo, port: 8080}") -> str:
    return f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r1}}
spec:
  parentRefs: [{parent}]
  rules:
  - {rule}
"""


def _sidecar(listener: str) -> str:
    return f"""\
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: app}}
spec:
  egress:
  - {listener}
"""


# (documents, the resource, the field path, the expectation) that must all be in the message.
BAD: list[tuple[str, str, str, str]] = [
    ("- just\n- a list\n", "bad.yaml:1", "", "expected a resource"),
    ("apiVersion: plait.dev/v1alpha1\nmetadata: {name: x}\nspec: {}\n", "", "", "'kind'"),
    (
        "apiVersion: plait.dev/v1alpha1\nkind: Gateway\nmetadata: {name: x}\nspec: {}\n",
        "",
        "kind",
        "one of Service, HTTPRoute, Filter, Sidecar",
    ),
    (
        SERVICE.replace("plait.dev/v1alpha1", "plait.dev/v2"),
        "",
        "apiVersion",
        "one of plait.dev/v1alpha1",
    ),
    (SERVICE.replace("{name: echo}", "{name: Echo_1}"), "", "metadata.name", "DNS label"),
    (SERVICE.replace("spec:", "specs:"), "Service/echo", "specs", "unknown field (allowed:"),
    (
        SERVICE.replace("protocol: http", "protocl: http"),
        "Service/echo",
        "spec.ports[0].protocl",
        "allowed: name, port, protocol",
    ),
    (
        SERVICE.replace("port: 8080", "port: 70000"),
        "Service/echo",
        "spec.ports[0].port",
        "expected an integer 1..65535, got 70000",
    ),
    (
        SERVICE.replace("port: 8080", "port: '8080'"),
        "Service/echo",
        "spec.ports[0].port",
        "expected an integer 1..65535, got '8080'",
    ),
    (
        SERVICE.replace("protocol: http", "protocol: udp"),
        "Service/echo",
        "spec.ports[0].protocol",
        "one of http, http2, grpc, tcp",
    ),
    (
        SERVICE.replace("address: 127.0.0.1", "address: 'not an address'"),
        "Service/echo",
        "spec.endpoints[0].address",
        "an IP address or host name",
    ),
    (
        SERVICE.replace("ports: [{name: http, port: 8080, protocol: http}]", "ports: []"),
        "Service/echo",
        "spec.ports",
        "at least one port",
    ),
    (
        SERVICE.replace("endpoints: [", "endpoints: {a: 1}\n  x: ["),
        "Service/echo",
        "spec.endpoints",
        "expected a list, got a mapping",
    ),
    (SERVICE + "---\n" + SERVICE, "Service/echo", "", "duplicate Service default/echo"),
    (
        SERVICE + _route("backendRefs: [{name: echo, port: 8080, weight: -3}]"),
        "HTTPRoute/r1",
        "spec.rules[0].backendRefs[0].weight",
        "expected an integer 0..1000000, got -3",
    ),
    (
        SERVICE + _route("backendRefs: [{name: nope, port: 8080}]"),
        "HTTPRoute/r1",
        "spec.rules[0].backendRefs[0]",
        "unknown Service default/nope",
    ),
    (
        SERVICE + _route("backendRefs: [{name: echo, port: 9999}]"),
        "HTTPRoute/r1",
        "spec.rules[0].backendRefs[0].port",
        "has no port 9999",
    ),
    (
        SERVICE + _route("backendRefs: [{name: echo, port: 8080}]", "{name: ghost}"),
        "HTTPRoute/r1",
        "spec.parentRefs[0]",
        "unknown Service default/ghost",
    ),
    (
        SERVICE + _route("{matches: [{path: {type: Prefix, value: /}}]}"),
        "HTTPRoute/r1",
        "spec.rules[0].matches[0].path.type",
        "one of Exact, PathPrefix, RegularExpression",
    ),
    (
        SERVICE + _route("{matches: [{path: {type: RegularExpression, value: '(unclosed'}}]}"),
        "HTTPRoute/r1",
        "spec.rules[0].matches[0].path.value",
        "a regular expression",
    ),
    (
        SERVICE + _route("{matches: [{path: {value: no-slash}}]}"),
        "HTTPRoute/r1",
        "spec.rules[0].matches[0].path.value",
        "starting with /",
    ),
    (
        SERVICE + _route("{matches: [{method: FETCH}]}"),
        "HTTPRoute/r1",
        "spec.rules[0].matches[0].method",
        "one of GET, HEAD",
    ),
    (
        SERVICE + _route("{timeouts: {request: 10 seconds}}"),
        "HTTPRoute/r1",
        "spec.rules[0].timeouts.request",
        "a duration like 500ms",
    ),
    (
        SERVICE + _route("{timeouts: {request: 1s, backendRequest: 2s}}"),
        "HTTPRoute/r1",
        "spec.rules[0].timeouts.backendRequest",
        "at most timeouts.request",
    ),
    (
        SERVICE + _route("{filters: [{type: RequestMirror, requestMirror: {}}]}"),
        "HTTPRoute/r1",
        "spec.rules[0].filters[0].type",
        "not supported yet",
    ),
    (
        SERVICE
        + _route(
            "{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x}]}}]}"
        ),
        "HTTPRoute/r1",
        "spec.rules[0].filters[0].requestHeaderModifier.set[0]",
        "missing required field 'value'",
    ),
    (
        SERVICE
        + _route(
            "{filters: [{type: ExtensionRef, extensionRef: "
            "{group: plait.dev, kind: Filter, name: nope}}]}"
        ),
        "HTTPRoute/r1",
        "spec.rules[0].filters[0].extensionRef.name",
        "unknown Filter 'nope'",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080}, service: echo, filters: [{type: nope}]}"),
        "Sidecar/app",
        "spec.egress[0].filters[0].type",
        "unknown filter type 'nope' (known: ",
    ),
    (
        SERVICE
        + _sidecar(
            "{port: {number: 18080}, service: echo, "
            "filters: [{type: path-deny, config: {paths: [{value: x}]}}]}"
        ),
        "Sidecar/app",
        "spec.egress[0].filters[0].config.paths[0].value",
        "expected a path starting with /",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080}, service: echo, filters: [{ref: ghost}]}"),
        "Sidecar/app",
        "spec.egress[0].filters[0].ref",
        "unknown Filter 'ghost'",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080}, service: nope}"),
        "Sidecar/app",
        "spec.egress[0].service",
        "unknown Service default/nope",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080}, service: echo, timeouts: {idle: 0s}}"),
        "Sidecar/app",
        "spec.egress[0].timeouts.idle",
        "not 0s",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080}, service: echo, bind: localhost}"),
        "Sidecar/app",
        "spec.egress[0].bind",
        "expected an IP address",
    ),
    (
        SERVICE
        + _sidecar(
            "{port: {number: 18080}, service: echo}\n  - {port: {number: 18080}, service: echo}"
        ),
        "Sidecar/app",
        "spec.egress[1]",
        "duplicate listener port 18080",
    ),
    (
        SERVICE + _sidecar("{port: {number: 18080, protocol: tcp}, service: echo}"),
        "Sidecar/app",
        "spec.egress[0].service",
        "no port usable by a tcp listener",
    ),
    (
        SERVICE.replace("protocol: http", "protocol: tcp")
        + _sidecar(
            "{port: {number: 18080, protocol: tcp}, service: echo, "
            "filters: [{type: path-deny, config: {paths: [{value: /}]}}]}"
        ),
        "Sidecar/app",
        "spec.egress[0].filters",
        "takes no filters",
    ),
    (
        SIDECAR.replace("egress:", "ingress:").replace("service: echo", "bind: 0.0.0.0"),
        "Sidecar/app",
        "spec.ingress[0]",
        "missing required field 'defaultEndpoint'",
    ),
    (
        SIDECAR.replace("egress:", "ingress:").replace("service: echo", "defaultEndpoint: app:x"),
        "Sidecar/app",
        "spec.ingress[0].defaultEndpoint",
        "HOST:PORT",
    ),
    (
        "apiVersion: plait.dev/v1alpha1\nkind: Filter\nmetadata: {name: f}\n"
        "spec: {python: {type: path-deny}, failStrategy: FailSoft}\n",
        "Filter/f",
        "spec.failStrategy",
        "one of FailClosed, FailOpen",
    ),
    (
        "apiVersion: plait.dev/v1alpha1\nkind: Filter\nmetadata: {name: f}\n"
        "spec: {python: {type: weighted-split}, config: {backends: []}}\n",
        "Filter/f",
        "spec.config.backends",
        "at least one backend",
    ),
]


@pytest.mark.parametrize(("text", "resource", "field", "expected"), BAD)
def test_bad_config_names_file_resource_field_and_expectation(
    tmp_path: Path, types: FilterTypes, text: str, resource: str, field: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config([path], types)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    for part in (resource, field, expected):
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("a: [1, 2\n", ":2:1:", "did not find expected ',' or ']'"),
        ("a: 1\nb: x: y\n", ":2:5:", "mapping values are not allowed"),
        ("kind: Service\nkind: Filter\n", ":2:1:", "duplicate key 'kind'"),
        ("a: *nowhere\n", ":1:4:", "undefined alias"),
    ],
)
def test_yaml_syntax_errors_have_line_and_column(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_documents([path])
    assert str(info.value).startswith(f"{path}{where} invalid YAML:"), str(info.value)
    assert what in str(info.value)


def test_error_line_points_at_the_field(tmp_path: Path, types: FilterTypes) -> None:
    path = _write(tmp_path, SERVICE + "---\n" + SIDECAR.replace("number: 18080", "number: 0"))
    with pytest.raises(ConfigError) as info:
        load_config([path], types)
    # the Sidecar starts at line 8; "- port: {number: 0}" is its line 6
    assert str(info.value).startswith(f"{path}:13: Sidecar/app: spec.egress[0].port.number:")
    assert info.value.field == "Sidecar/app: spec.egress[0].port.number"


def test_sidecar_selection_errors(tmp_path: Path, types: FilterTypes) -> None:
    two = (
        SIDECAR
        + "---\n"
        + SIDECAR.replace("{name: app}", "{name: other}").replace("18080", "18081")
    )
    path = _write(tmp_path, SERVICE + "---\n" + two)
    with pytest.raises(ConfigError, match=r"2 Sidecar resources .*--sidecar NAME"):
        load_config([path], types)
    with pytest.raises(ConfigError, match=r"--sidecar: Sidecar 'ghost' does not exist") as info:
        load_config([path], types, sidecar="ghost")
    assert str(path) in str(info.value)
    assert load_config([path], types, sidecar="other").listeners[0].port == 18081
    assert load_config([path], types, sidecar="app.default").listeners[0].port == 18080


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_documents([tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match=r"no \.yaml or \.yml files"):
        load_documents([tmp_path])
    with pytest.raises(ConfigError, match="no config files"):
        load_documents([])


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"kind: \xff\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml: expected UTF-8 text"):
        load_documents([path])


def test_directory_files_in_name_order_and_empty_documents_skipped(
    tmp_path: Path, types: FilterTypes
) -> None:
    _write(tmp_path, "---\n" + SIDECAR + "---\n", "b.yml")
    _write(tmp_path, "# comment only\n---\n" + SERVICE, "a.yaml")
    _write(tmp_path, "not: yaml config at all\n", "notes.txt")
    res = load_documents([tmp_path])
    assert res.sources == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yml"))
    assert [s.meta.name for s in res.services] == ["echo"]
    assert res.services[0].meta.order == 0 and res.sidecars[0].meta.order == 1
    cfg = load_config([tmp_path], types)
    assert cfg.listeners[0].route_table == "echo.default:8080"


def test_several_files_are_one_config(tmp_path: Path, types: FilterTypes) -> None:
    a, b = _write(tmp_path, SERVICE, "svc.yaml"), _write(tmp_path, SIDECAR, "sidecar.yaml")
    cfg = load_config([a, b], types)
    assert cfg.sources == (str(a), str(b))
    assert [lis.name for lis in cfg.listeners] == ["outbound|18080"]


def test_version_ignores_formatting_but_not_content(tmp_path: Path, types: FilterTypes) -> None:
    a = _write(tmp_path, SERVICE + "---\n" + SIDECAR, "a.yaml")
    flow = SERVICE.replace("metadata: {name: echo}", "metadata:\n  name: echo  # same\n")
    b = _write(tmp_path, flow + "---\n" + SIDECAR, "b.yaml")
    c = _write(tmp_path, (SERVICE + "---\n" + SIDECAR).replace("9001", "9002"), "c.yaml")
    va, vb, vc = (load_config([p], types).version for p in (a, b, c))
    assert va == vb != vc
    assert len(va) == 12 and int(va, 16) >= 0


def test_durations(tmp_path: Path, types: FilterTypes) -> None:
    text = (
        SERVICE
        + _route(
            "{backendRefs: [{name: echo, port: 8080}], "
            "timeouts: {request: 1h30m, backendRequest: 500ms}}"
        )
        + _route("{backendRefs: [{name: echo, port: 8080}], timeouts: {request: 0s}}").replace(
            "r1", "r2"
        )
    )
    cfg = load_config([_write(tmp_path, text, "ok.yaml")], types)
    rules = cfg.routes["echo.default:8080"].rules
    assert rules[0].timeouts.request == 5400.0 and rules[0].timeouts.backend_request == 0.5
    assert rules[1].timeouts.request is None  # 0s disables


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@given(
    st.lists(
        st.tuples(st.integers(0, 99_999), st.sampled_from(list(_UNITS))), min_size=1, max_size=4
    )
)
def test_duration_grammar(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * _UNITS[unit] for n, unit in parts))


@pytest.mark.parametrize(
    "text", ["", "10", "1.5s", "-1s", "1d", "100000s", "1h1h1h1h1h", "1 s", "s"]
)
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path, types: FilterTypes) -> None:
    text = SERVICE.replace(
        "  endpoints: [{address: 127.0.0.1, port: 9001}]",
        "  endpoints:\n  - &ep {address: 127.0.0.1, port: 9001}\n  - {<<: *ep, port: 9002}",
    )
    cfg = load_config([_write(tmp_path, text, "merge.yaml")], types)
    assert [e.port for e in cfg.clusters["echo.default:8080"].endpoints] == [9001, 9002]
