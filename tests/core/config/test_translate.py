"""Translation of resources into the frozen MeshConfig the runtime relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.core.config import (
    WEIGHTED_SPLIT,
    Direction,
    MatchType,
    MeshConfig,
    Protocol,
    RouteRule,
    WeightedBackend,
    dump_config,
    load_config,
)
from plait.filters.header_modifier import HeaderModifierConfig
from plait.filters.traffic_split import WeightedSplitConfig
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import FailStrategy

SERVICES = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 8080}, {name: admin, port: 9090, protocol: http2}]
  endpoints:
  - {address: 127.0.0.1, port: 9001, weight: 3, labels: {version: v1}}
  - {address: "::1", port: 9002}
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo-v2, namespace: default}
spec:
  ports: [{port: 8080}]
  endpoints: [{address: localhost, port: 9003}]
"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _load(tmp_path: Path, types: FilterTypes, text: str, sidecar: str | None = None) -> MeshConfig:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return load_config([path], types, sidecar=sidecar)


def _route(name: str, rules: str, parent: str = "{name: echo, port: 8080}", ns: str = "") -> str:
    namespace = f", namespace: {ns}" if ns else ""
    return f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}{namespace}}}
spec:
  parentRefs: [{parent}]
  rules:
{rules}"""


def _split(rule: RouteRule) -> WeightedSplitConfig:
    last = rule.filters[-1]
    assert last.spec.name == WEIGHTED_SPLIT
    config = last.config
    assert isinstance(config, WeightedSplitConfig)
    return config


def test_service_ports_become_clusters(tmp_path: Path, types: FilterTypes) -> None:
    cfg = _load(tmp_path, types, SERVICES)
    assert set(cfg.clusters) == {"echo.default:8080", "echo.default:9090", "echo-v2.default:8080"}
    http, h2 = cfg.clusters["echo.default:8080"], cfg.clusters["echo.default:9090"]
    assert http.name == "echo.default:8080"
    assert http.protocol is Protocol.HTTP and h2.protocol is Protocol.HTTP2
    assert [(e.address, e.port, e.weight) for e in http.endpoints] == [
        ("127.0.0.1", 9001, 3),
        ("::1", 9002, 1),
    ]
    assert http.endpoints[0].labels == {"version": "v1"}
    assert cfg.listeners == () and cfg.routes == {}


def test_route_rules_filters_and_appended_split(tmp_path: Path, types: FilterTypes) -> None:
    rules = """\
  - name: canary
    matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: X-Canary, value: "1"}]
      method: GET
      queryParams: [{name: debug, value: "1"}]
    backendRefs: [{name: echo-v2, port: 8080}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: c}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [server]}}
    - {type: ExtensionRef, extensionRef: {group: plait.dev, kind: Filter, name: stamp}}
    timeouts: {request: 10s, backendRequest: 2s}
  - backendRefs: [{name: echo, port: 8080, weight: 90}, {name: echo-v2, port: 8080, weight: 10}]
"""
    stamp = """\
---
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {name: stamp}
spec: {python: {type: example-stamp}, config: {value: hi}, failStrategy: FailOpen}
"""
    cfg = _load(tmp_path, types, SERVICES + _route("echo", rules) + stamp)
    assert set(cfg.routes) == {"echo.default:8080"}  # parentRef port 8080 only
    table = cfg.routes["echo.default:8080"]
    assert table.service == "echo.default:8080"
    canary, default = table.rules
    assert canary.name == "default/echo/canary" and default.name == "default/echo/1"
    (m,) = canary.matches
    assert m.path is not None and (m.path.type, m.path.value) == (MatchType.PREFIX, "/api")
    assert [(h.name, h.value) for h in m.headers] == [("x-canary", "1")]
    assert m.method == "GET" and [(q.name, q.value) for q in m.query_params] == [("debug", "1")]
    assert canary.backends == (WeightedBackend(cluster="echo-v2.default:8080", weight=1),)
    assert [f.spec.name for f in canary.filters] == [
        "request-header-modifier",
        "response-header-modifier",
        "example-stamp",
        WEIGHTED_SPLIT,
    ]
    assert canary.filters[2].name == "stamp"
    assert canary.filters[2].fail_strategy is FailStrategy.FAIL_OPEN
    assert isinstance(canary.filters[0].config, HeaderModifierConfig)
    assert canary.timeouts.request == 10.0 and canary.timeouts.backend_request == 2.0
    assert [(b.cluster, b.weight) for b in _split(default).backends] == [
        ("echo.default:8080", 90),
        ("echo-v2.default:8080", 10),
    ]
    # A rule with no matches matches everything.
    assert default.matches[0].path is not None and default.matches[0].path.value == "/"


def test_parent_without_port_attaches_to_every_http_port(
    tmp_path: Path, types: FilterTypes
) -> None:
    rules = "  - backendRefs: [{name: echo-v2, port: 8080}]\n"
    cfg = _load(
        tmp_path, types, SERVICES + _route("r", rules, parent="{kind: Service, name: echo}")
    )
    assert set(cfg.routes) == {"echo.default:8080", "echo.default:9090"}


def test_gateway_precedence_across_routes(tmp_path: Path, types: FilterTypes) -> None:
    older = """\
  - name: prefix-short
    matches: [{path: {value: /a}}]
    backendRefs: [{name: echo, port: 8080}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: /a/.*}}]
    backendRefs: [{name: echo, port: 8080}]
  - name: tie-older
    matches: [{path: {value: /t}, headers: [{name: h, value: v}]}]
    backendRefs: [{name: echo, port: 8080}]
"""
    newer = """\
  - name: multi
    matches:
    - path: {value: /a/b/c}
    - path: {type: Exact, value: /x}
    backendRefs: [{name: echo-v2, port: 8080}]
  - name: method
    matches: [{path: {value: /a}, method: POST}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - name: headers2
    matches: [{path: {value: /t}, headers: [{name: h, value: v}, {name: i, value: w}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - name: tie-newer
    matches: [{path: {value: /t}, headers: [{name: h, value: v}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - name: query
    matches: [{path: {value: /a}, queryParams: [{name: q, value: "1"}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
"""
    cfg = _load(tmp_path, types, SERVICES + _route("old", older) + _route("new", newer))
    table = cfg.routes["echo.default:8080"]
    order = [(r.name.rsplit("/", 1)[1], r.matches[0].path) for r in table.rules]
    assert [(name, path.value if path else None) for name, path in order] == [
        ("multi", "/x"),  # Exact first
        ("multi", "/a/b/c"),  # then the longest prefix; /a and /t tie on length, so:
        ("method", "/a"),  # a method match wins,
        ("headers2", "/t"),  # then more header matches,
        ("tie-older", "/t"),  # and on a full tie, the older route,
        ("tie-newer", "/t"),
        ("query", "/a"),  # then more query matches,
        ("prefix-short", "/a"),
        ("regex", "/a/.*"),  # regular expressions last
    ]


def test_producer_and_consumer_routes(tmp_path: Path, types: FilterTypes) -> None:
    sidecars = """\
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: a, namespace: shop}
spec:
  egress: [{port: {number: 18080}, service: echo.default}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: b, namespace: other}
spec:
  egress: [{port: {number: 18080}, service: echo.default}]
"""
    producer = _route("p", "  - backendRefs: [{name: echo-v2, port: 8080}]\n")
    consumer = _route(
        "c",
        "  - backendRefs: [{name: echo, namespace: default, port: 8080}]\n",
        parent="{name: echo, namespace: default, port: 8080}",
        ns="shop",
    )
    text = SERVICES + producer + consumer + sidecars
    (rule_a,) = _load(tmp_path, types, text, sidecar="a").routes["echo.default:8080"].rules
    (rule_b,) = _load(tmp_path, types, text, sidecar="b").routes["echo.default:8080"].rules
    assert rule_a.name == "shop/c/0"  # the consumer's own route replaces the producer's
    assert rule_b.name == "default/p/0"


def test_egress_listener_without_routes_passes_through(tmp_path: Path, types: FilterTypes) -> None:
    sidecar = """\
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app}
spec:
  admin: {port: 15100}
  egress:
  - port: {number: 18080}
    service: echo
    filters:
    - type: request-header-modifier
      config: {set: [{name: x-a, value: b}]}
      failStrategy: FailOpen
    timeouts: {request: 15s, idle: 1h, requestHeaders: 5s}
  - name: h2
    port: {number: 18081, protocol: http2}
    service: echo
  - port: {number: 18082}
    service: echo
    servicePort: 9090
  drainTimeout: 2s
  maxRequestHeadersKb: 96
"""
    cfg = _load(tmp_path, types, SERVICES + sidecar)
    assert cfg.admin.port == 15100 and cfg.admin.bind == "127.0.0.1"
    assert cfg.max_request_headers_kb == 96
    first, h2, picked = cfg.listeners
    assert (first.name, first.direction, first.bind) == (
        "outbound|18080",
        Direction.OUTBOUND,
        "127.0.0.1",
    )
    assert first.route_table == "echo.default:8080" and first.tcp_cluster is None
    assert h2.route_table == "echo.default:9090"  # the first port of the same protocol
    assert picked.route_table == "echo.default:9090"
    assert first.filters[0].fail_strategy is FailStrategy.FAIL_OPEN
    t = first.timeouts
    assert (t.request, t.idle, t.request_headers, t.drain) == (15.0, 3600.0, 5.0, 2.0)
    (rule,) = cfg.routes["echo.default:8080"].rules
    assert rule.matches[0].path is not None and rule.matches[0].path.value == "/"
    assert [f.spec.name for f in rule.filters] == [WEIGHTED_SPLIT]
    assert [b.cluster for b in _split(rule).backends] == ["echo.default:8080"]


def test_ingress_and_tcp_listeners(tmp_path: Path, types: FilterTypes) -> None:
    text = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: redis}
spec:
  ports: [{port: 6379, protocol: tcp}]
  endpoints: [{address: 127.0.0.1, port: 6379}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app}
spec:
  egress:
  - {port: {number: 16379, protocol: tcp}, service: redis}
  ingress:
  - port: {number: 15006, protocol: http}
    defaultEndpoint: 127.0.0.1:9001
    filters: [{type: path-deny, config: {paths: [{value: /admin}]}}]
  - port: {number: 15007, protocol: tcp}
    defaultEndpoint: "[::1]:9002"
"""
    cfg = _load(tmp_path, types, text)
    tcp_out, http_in, tcp_in = cfg.listeners
    assert tcp_out.tcp_cluster == "redis.default:6379" and tcp_out.route_table == ""
    assert http_in.name == "inbound|15006" and http_in.bind == "0.0.0.0"
    assert http_in.direction is Direction.INBOUND and http_in.route_table == "inbound|15006"
    assert [f.spec.name for f in http_in.filters] == ["path-deny"]
    inbound = cfg.clusters["inbound|15006"]
    assert inbound.protocol is Protocol.HTTP
    assert [(e.address, e.port) for e in inbound.endpoints] == [("127.0.0.1", 9001)]
    (rule,) = cfg.routes["inbound|15006"].rules
    assert [b.cluster for b in _split(rule).backends] == ["inbound|15006"]
    assert tcp_in.tcp_cluster == "inbound|15007" and "inbound|15007" not in cfg.routes
    assert cfg.clusters["inbound|15007"].endpoints[0].address == "::1"


def test_no_sidecar_is_valid(tmp_path: Path, types: FilterTypes) -> None:
    cfg = _load(tmp_path, types, SERVICES)
    assert cfg.listeners == () and cfg.admin.port == 15000


def test_filter_resource_is_shared_by_reference(tmp_path: Path, types: FilterTypes) -> None:
    text = (
        SERVICES
        + """\
---
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {name: deny}
spec: {python: {type: path-deny}, config: {paths: [{value: /admin}]}}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: app}
spec:
  egress:
  - {port: {number: 18080}, service: echo, filters: [{ref: deny}]}
  - {port: {number: 18081}, service: echo, filters: [{ref: deny}]}
"""
    )
    cfg = _load(tmp_path, types, text)
    a, b = (lis.filters[0] for lis in cfg.listeners)
    assert a is b and a.name == "deny" and a.fail_strategy is FailStrategy.FAIL_CLOSED


def test_dump_is_json(tmp_path: Path, types: FilterTypes) -> None:
    root = Path(__file__).parents[3]
    cfg = load_config([root / "examples/demo/mesh.yaml"], types, sidecar="frontend")
    dump = json.loads(json.dumps(dump_config(cfg)))
    assert dump["version"] == cfg.version
    listener = dump["listeners"][0]
    assert listener["filters"][0] == {
        "name": "request-header-modifier",
        "type": "request-header-modifier",
        "config": {"set": [{"name": "x-caller", "value": "frontend"}], "add": [], "remove": []},
        "failStrategy": "FailOpen",
    }
    rules = dump["routes"]["backend.default:8080"]["rules"]
    split = rules[-1]["filters"][-1]
    assert split["type"] == WEIGHTED_SPLIT
    assert split["config"] == {
        "backends": [
            {"cluster": "backend-v1.default:8080", "weight": 90},
            {"cluster": "backend-v2.default:8080", "weight": 10},
        ]
    }
    assert rules[0]["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"name": "x-canary", "type": "Exact", "value": "1"}],
        }
    ]


def test_public_api() -> None:
    from plait.core import config

    assert sorted(config.__all__) == sorted(
        [
            "WEIGHTED_SPLIT", "AdminConfig", "Cluster", "Direction", "Endpoint", "FilterEntry",
            "HeaderMatch", "ListenerConfig", "ListenerTLS", "MatchType", "MeshConfig", "PathMatch",
            "MtlsMode", "Protocol",
            "Resources", "RouteMatch", "RouteRule", "RouteTable", "Timeouts", "TracingConfig",
            "WeightedBackend",
            "dump_config", "load_config", "load_documents", "translate",
            "KINDS", "ParsedDocument", "parse_stored", "WorkloadPort", "WorkloadRes", "parse_text",
            "resources_of", "split_entry",
        ]
    )  # fmt: skip
    assert all(hasattr(config, name) for name in config.__all__)
