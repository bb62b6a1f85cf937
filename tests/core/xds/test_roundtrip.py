"""MeshConfig → xDS (encode) → bytes → xDS → MeshConfig (decode) gives back the same config."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)

from plait.core.config import (
    WEIGHTED_SPLIT,
    AdminConfig,
    FilterEntry,
    ListenerConfig,
    ListenerTLS,
    MatchType,
    MeshConfig,
    PathMatch,
    Protocol,
    RouteMatch,
    RouteRule,
    RouteTable,
    TracingConfig,
    load_config,
    load_documents,
)
from plait.core.xds.wire import HCM
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError, FailStrategy, FilterSpec

from .xds_cases import EXAMPLES, RESILIENT, RICH, assert_same, mesh, over_the_wire, round_trip


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


EXAMPLE_CASES = [
    ("demo/mesh.yaml", "frontend"),
    ("demo/mesh.yaml", "backend"),
    ("static/single.yaml", None),
    ("static/grpc.yaml", None),
    ("static/tcp.yaml", None),
    ("static/resilience.yaml", None),
    ("control-plane/mesh.yaml", "frontend"),
    ("control-plane/mesh.yaml", "backend-v1"),
    ("control-plane/mesh.yaml", "backend-v2"),
]


def test_every_example_is_covered() -> None:
    files = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")}
    assert files == {path for path, _ in EXAMPLE_CASES}
    for path in files:  # every Sidecar of a multi-sidecar example
        assert len({s for p, s in EXAMPLE_CASES if p == path}) == len(_sidecars(path)), path


def _sidecars(path: str) -> list[str | None]:
    names: list[str | None] = [s.meta.name for s in load_documents([EXAMPLES / path]).sidecars]
    return names or [None]


@pytest.mark.parametrize(("path", "sidecar"), EXAMPLE_CASES)
def test_examples_round_trip(types: FilterTypes, path: str, sidecar: str | None) -> None:
    cfg = load_config([EXAMPLES / path], types, sidecar=sidecar)
    assert_same(round_trip(cfg, types), cfg)


def test_rich_config_round_trips(types: FilterTypes) -> None:
    cfg = mesh(types)
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    # What the equality covers, spelled out for the parts most likely to drift.
    by_name = {lis.name: lis for lis in got.listeners}
    assert by_name["outbound|18090"].protocol is Protocol.HTTP2
    assert by_name["outbound|18443"].protocol is Protocol.GRPC
    assert by_name["outbound|15432"].tcp_cluster == "db.default:5432"
    assert by_name["outbound|15432"].timeouts.idle == 1800
    assert by_name["outbound|18080"].timeouts.drain == 7
    assert by_name["outbound|18080"].filters[0].fail_strategy is FailStrategy.FAIL_OPEN
    assert got.max_request_headers_kb == 96 and got.access_log == "/dev/stdout"
    assert got.clusters["web.default:50051"].protocol is Protocol.GRPC
    assert got.clusters["web.default:9090"].protocol is Protocol.HTTP2
    assert got.clusters["empty.default:8080"].endpoints == ()
    ep = got.clusters["web.default:8080"].endpoints
    assert (ep[0].weight, dict(ep[0].labels), ep[1].address) == (
        3,
        {"version": "v1", "zone": "a"},
        "fd00::2",
    )
    rules = got.routes["web.default:8080"].rules
    assert rules[0].name == "default/web/multi"
    gone = next(r for r in rules if r.name == "default/web/gone")
    assert gone.backends == () and gone.filters == ()
    multi = [r for r in rules if r.name == "default/web/multi"]
    assert {r.timeouts.request for r in multi} == {2.5}
    assert {r.timeouts.backend_request for r in multi} == {0.5}
    assert all(r.filters[-1].type == WEIGHTED_SPLIT for r in multi)


@pytest.mark.parametrize(
    ("endpoint", "protocol"),
    [("http://127.0.0.1:4318", "http/protobuf"), ("http://127.0.0.1:4317", "grpc"),
     ("https://otel.example:4317", "grpc")],
)  # fmt: skip
def test_tracing_and_access_log_sampling_round_trip(
    types: FilterTypes, endpoint: str, protocol: str
) -> None:
    tracing = TracingConfig(endpoint=endpoint, protocol=protocol, sampling=2.5, service="a.b")
    cfg = dataclasses.replace(
        mesh(types), tracing=tracing, access_log="/var/log/a.log", access_log_sampling=12.5
    )
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    assert got.tracing == tracing and got.access_log_sampling == 12.5


def test_listeners_that_disagree_on_tracing_are_refused(types: FilterTypes) -> None:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds._decode import decode_mesh
    from plait.core.xds.wire import LISTENER

    tracing = TracingConfig(endpoint="http://127.0.0.1:4318", sampling=100.0)
    resources = encode_mesh(dataclasses.replace(mesh(types), tracing=tracing))
    http = [m for m in resources[LISTENER].values() if m.filter_chains[0].filters[0].name == HCM]
    hcm = hcm_pb2.HttpConnectionManager()
    http[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    hcm.ClearField("tracing")
    http[0].filter_chains[0].filters[0].typed_config.Pack(hcm)
    with pytest.raises(ConfigError, match="tracing differs between listeners"):
        decode_mesh(over_the_wire(resources), types, version="v1", admin=AdminConfig())


def test_listeners_keep_their_order_whatever_order_lds_delivers(types: FilterTypes) -> None:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds._decode import decode_mesh
    from plait.core.xds.wire import LISTENER

    cfg = mesh(types)
    res = encode_mesh(cfg)
    res[LISTENER] = dict(reversed(list(res[LISTENER].items())))
    got = decode_mesh(res, types, version="v1", admin=cfg.admin)
    assert [lis.name for lis in got.listeners] == [lis.name for lis in cfg.listeners]


def _with_listener(cfg: MeshConfig, name: str, **changes: Any) -> MeshConfig:
    listeners = tuple(
        dataclasses.replace(lis, **changes) if lis.name == name else lis for lis in cfg.listeners
    )
    return dataclasses.replace(cfg, listeners=listeners)


def _with_rules(cfg: MeshConfig, key: str, rules: tuple[RouteRule, ...]) -> MeshConfig:
    routes = dict(cfg.routes)
    routes[key] = RouteTable(service=key, rules=rules)
    return dataclasses.replace(cfg, routes=routes)


def test_request_metrics_off_round_trips_per_listener(types: FilterTypes) -> None:
    cfg = mesh(types)
    off = [lis.name for lis in cfg.listeners if lis.direction.value == "inbound"]
    assert off and len(off) < len(cfg.listeners)
    for name in off:
        cfg = _with_listener(cfg, name, request_metrics=False)
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    assert [lis.name for lis in got.listeners if not lis.request_metrics] == off


def test_tls_listener_round_trips(types: FilterTypes) -> None:
    tls = ListenerTLS(cert_file="/etc/plait/cert.pem", key_file="/etc/plait/key.pem")
    cfg = _with_listener(mesh(types), "inbound|18201", tls=tls)
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    assert next(lis for lis in got.listeners if lis.tls is not None).tls == tls


def test_a_rule_with_several_matches_stays_one_rule(types: FilterTypes) -> None:
    cfg = mesh(types)
    key = "web.default:8080"
    multi = [r for r in cfg.routes[key].rules if r.name == "default/web/multi"]
    merged = dataclasses.replace(multi[0], matches=tuple(m for r in multi for m in r.matches))
    cfg = _with_rules(cfg, key, (merged, *cfg.routes[key].rules))
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    assert len(got.routes[key].rules[0].matches) == 3


def test_adjacent_rules_of_one_name_stay_apart(types: FilterTypes) -> None:
    """The translator expands a rule per match; two expansions may sit side by side."""
    text = RICH.replace("    - path: {type: PathPrefix, value: /api/}\n      method: POST\n",
                        "    - path: {type: Exact, value: /exact2}\n")  # fmt: skip
    cfg = mesh(types, text)
    rules = cfg.routes["web.default:8080"].rules
    assert rules[0].name == rules[1].name  # both Exact: adjacent after sorting
    got = round_trip(cfg, types)
    assert got.routes["web.default:8080"].rules == rules


def test_matches_without_a_path_and_prefixes_with_a_slash(types: FilterTypes) -> None:
    cfg = mesh(types)
    key = "web.default:8080"
    rest = cfg.routes[key].rules[-1]
    odd = (
        RouteMatch(method="GET"),
        RouteMatch(path=PathMatch(type=MatchType.PREFIX, value="/a/b/")),
        RouteMatch(path=PathMatch(type=MatchType.PREFIX, value="//")),
    )
    cfg = _with_rules(cfg, key, (dataclasses.replace(rest, matches=odd),))
    got = round_trip(cfg, types)
    assert got.routes[key].rules[0].matches == odd


def test_a_rule_without_matches_is_dropped(types: FilterTypes) -> None:
    cfg = mesh(types)
    key = "web.default:8080"
    never = dataclasses.replace(cfg.routes[key].rules[-1], matches=())
    cfg = _with_rules(cfg, key, (never, *cfg.routes[key].rules))
    assert round_trip(cfg, types).routes[key].rules == cfg.routes[key].rules[1:]


def test_cluster_timeouts_and_idle_pool_round_trip(types: FilterTypes) -> None:
    cfg = mesh(types)
    clusters = dict(cfg.clusters)
    for name in ("web.default:8080", "db.default:5432"):
        c = clusters[name]
        t = dataclasses.replace(c.timeouts, connect=0.25, idle=42.0, backend_request=1.5)
        clusters[name] = dataclasses.replace(c, timeouts=t, max_idle_per_endpoint=8)
    cfg = dataclasses.replace(cfg, clusters=clusters)
    assert_same(round_trip(cfg, types), cfg)


def test_filters_the_control_plane_does_not_know(types: FilterTypes) -> None:
    """The control plane encodes type + raw config; the sidecar's registry builds the entry."""
    text = RICH.replace(
        "    - type: response-header-modifier\n",
        "    - type: rate-limit\n      config: {rps: 10, burst: 2.5, keys: [a, b], enabled: true}\n"
        "    - type: response-header-modifier\n",
    )
    cp = mesh(types, text, unknown_filters=True)
    assert not cp.listeners[0].filters[0].known
    spec = FilterSpec(name="rate-limit", make=lambda c: c, parse_config=dict)
    sidecar_types = {**types, "rate-limit": spec}
    got = round_trip(cp, sidecar_types)
    entry = got.listeners[0].filters[0]
    assert isinstance(entry, FilterEntry) and entry.known and entry.spec is spec
    assert entry.config == {"rps": 10, "burst": 2.5, "keys": ["a", "b"], "enabled": True}
    assert isinstance(entry.config["rps"], int)
    assert got.listeners[0].filters[1:] == cp.listeners[0].filters[1:]


def test_listener_config_type_is_plain(types: FilterTypes) -> None:
    cfg = mesh(types)
    assert all(isinstance(lis, ListenerConfig) for lis in round_trip(cfg, types).listeners)


def test_resilience_round_trips(types: FilterTypes) -> None:
    """BackendTrafficPolicy → Cluster.policy (+ circuit_breakers), rule retry → facts +
    retry_policy, the resilience layers after the split, stream_idle: all come back equal."""
    cfg = mesh(types, RESILIENT)
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    api = got.clusters["api.default:8080"]
    assert api.policy is not None and api.policy.name == "default/api"
    assert api.policy.load_balancer.hash_header == "x-user"
    assert api.policy.outlier.failure_percentage_threshold == 0
    assert api.timeouts.stream_idle == pytest.approx(1.7) and api.timeouts.connect == 0.25
    assert got.clusters["api.default:50051"].policy == api.policy
    assert got.clusters["api-canary.default:8080"].policy is not None
    rules = {r.name: r for r in got.routes["api.default:8080"].rules}
    split = rules["default/api/split"]
    assert [e.type for e in split.filters] == [
        "request-header-modifier",
        WEIGHTED_SPLIT,
        "retry",
        "circuit-breaker",
        "load-balancer",
    ]
    assert split.retry is not None and split.retry.codes == (503, 429)
    assert split.retry.max_backoff == 1.0 and split.retry.retry_non_idempotent
    assert (
        rules["default/api/plain-retry"].retry
        == cfg.routes["api.default:8080"]
        .rules[
            [r.name for r in cfg.routes["api.default:8080"].rules].index("default/api/plain-retry")
        ]
        .retry
    )
    assert rules["default/api/nowhere"].backends == ()
    assert [e.type for e in rules["default/api/nowhere"].filters] == ["retry"]
    # the catch-all table of the grpc port has the layers too
    (grpc_rule,) = got.routes["api.default:50051"].rules
    assert [e.type for e in grpc_rule.filters] == [
        WEIGHTED_SPLIT,
        "circuit-breaker",
        "load-balancer",
    ]


def test_resilience_standard_fields(types: FilterTypes) -> None:
    """What Envoy and gRPC read: retry_policy on the Route, circuit_breakers on the Cluster."""
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds.wire import CLUSTER, ROUTE

    res = over_the_wire(encode_mesh(mesh(types, RESILIENT)))
    routes = {r.name: r for r in res[ROUTE]["api.default:8080"].virtual_hosts[0].routes}
    rp = routes["default/api/split"].route.retry_policy
    assert rp.num_retries.value == 3
    assert rp.retry_on == "reset,5xx,unavailable,retriable-status-codes"
    assert list(rp.retriable_status_codes) == [503, 429]
    assert rp.per_try_timeout.ToMilliseconds() == 750
    assert rp.retry_back_off.base_interval.ToMilliseconds() == 40
    assert rp.retry_back_off.max_interval.ToMilliseconds() == 1000
    once = routes["default/api/plain-retry"].route.retry_policy
    assert (once.num_retries.value, once.retry_on) == (
        1,
        "connect-failure,reset,unavailable,cancelled",
    )
    assert once.retry_back_off.max_interval.ToMilliseconds() == 3000
    # attempts 0: no num_retries (gRPC NACKs 0), so no retry_policy at all
    assert not routes["default/api/no-retries"].route.HasField("retry_policy")
    # only plait's `timeout` condition: nothing Envoy/gRPC would retry, only the per-try timeout
    slow = routes["default/api/timeouts-only"].route.retry_policy
    assert [f.name for f, _ in slow.ListFields()] == ["per_try_timeout"]
    (t,) = res[CLUSTER]["api.default:8080"].circuit_breakers.thresholds
    assert (t.max_connections.value, t.max_pending_requests.value) == (64, 0)
    assert (t.max_requests.value, t.max_retries.value) == (128, 7)
    assert t.HasField("max_pending_requests")
    assert not res[CLUSTER]["api.default:8080"].lb_policy  # ROUND_ROBIN: plait's filter balances


def test_resilience_mismatches_are_refused(types: FilterTypes) -> None:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds._decode import decode_mesh
    from plait.core.xds.wire import CLUSTER, METADATA_KEY, ROUTE
    from plait.sdk import ConfigError

    cfg = mesh(types, RESILIENT)

    def decode(res: Any) -> MeshConfig:
        return decode_mesh(res, types, version="v1", admin=cfg.admin)

    res = over_the_wire(encode_mesh(cfg))
    res[CLUSTER]["api.default:8080"].circuit_breakers.thresholds[0].max_requests.value = 5
    with pytest.raises(ConfigError, match=r"Cluster api.default:8080: circuit_breakers"):
        decode(res)

    res = over_the_wire(encode_mesh(cfg))
    route = res[ROUTE]["api.default:8080"].virtual_hosts[0].routes[0]
    route.route.retry_policy.num_retries.value = 9
    with pytest.raises(ConfigError, match=r"retry_policy: does not match the rule's retry"):
        decode(res)

    res = over_the_wire(encode_mesh(cfg))
    md = res[CLUSTER]["api.default:8080"].metadata.filter_metadata[METADATA_KEY]
    md.fields["policy"].struct_value.fields["spec"].struct_value.fields[
        "circuitBreaker"
    ].struct_value.fields["maxRequest"].number_value = 1
    with pytest.raises(ConfigError, match=r"metadata.plait.policy.spec.circuitBreaker.maxRequest"):
        decode(res)

    res = over_the_wire(encode_mesh(cfg))
    for route in res[ROUTE]["api.default:8080"].virtual_hosts[0].routes:
        md = route.metadata.filter_metadata[METADATA_KEY]
        if "split" in md.fields:
            md.fields["split"].number_value = 99
    with pytest.raises(ConfigError, match=r"metadata.plait.split: expected an index"):
        decode(res)


def test_encoder_refuses_what_yaml_cannot_say(types: FilterTypes) -> None:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.sdk import ConfigError

    cfg = mesh(types, RESILIENT)
    clusters = dict(cfg.clusters)
    c = clusters["api.default:8080"]
    assert c.policy is not None
    odd = dataclasses.replace(c.policy, connect_timeout=0.0004)  # not whole milliseconds
    clusters[c.name] = dataclasses.replace(c, policy=odd)
    with pytest.raises(ConfigError, match=r"Cluster api.default:8080: policy"):
        encode_mesh(dataclasses.replace(cfg, clusters=clusters))


def test_split_position_is_explicit(types: FilterTypes) -> None:
    """A rule whose split is not last (a filter after it) keeps its order."""
    cfg = mesh(types)
    key = "web.default:8080"
    rule = cfg.routes[key].rules[0]
    moved = dataclasses.replace(rule, filters=(rule.filters[-1], *rule.filters[:-1]))
    cfg = _with_rules(cfg, key, (moved,))
    assert round_trip(cfg, types).routes[key].rules == (moved,)


def test_endpoint_identities_and_the_tls_mode_round_trip(types: FilterTypes) -> None:
    text = RESILIENT.replace(
        "  timeouts: {connect: 250ms",
        "  tls: {mode: ISTIO_MUTUAL}\n  h2UpgradePolicy: DO_NOT_UPGRADE\n"
        "  timeouts: {connect: 250ms",
    ) + (
        "---\napiVersion: plait.dev/v1alpha1\nkind: Workload\nmetadata: {name: api-1}\n"
        "spec: {service: api, serviceAccount: api, address: 10.0.2.1, tlsMode: mutual}\n"
        "---\napiVersion: plait.dev/v1alpha1\nkind: Workload\nmetadata: {name: api-2}\n"
        "spec: {service: api, address: 10.0.2.2}\n"
    )
    cfg = mesh(types, text, trust_domain="corp.example")
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    api = got.clusters["api.default:8080"]
    assert api.policy is not None and api.policy.tls_mode == "ISTIO_MUTUAL"
    assert api.policy.h2_upgrade == "DO_NOT_UPGRADE"
    assert [(e.address, e.identity, e.mtls) for e in api.endpoints][2:] == [
        ("10.0.2.1", "spiffe://corp.example/ns/default/sa/api", True),
        ("10.0.2.2", "spiffe://corp.example/ns/default/sa/default", False),
    ]
