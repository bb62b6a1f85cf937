"""Decoding is strict: precise NACK reasons, ``Incomplete`` for missing references."""

from __future__ import annotations

import re
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import health_check_pb2  # type: ignore[import-untyped]
from envoy.config.route.v3 import route_components_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.http.router.v3 import router_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from plait.controlplane.xds._encode import encode_mesh
from plait.core.xds._decode import Incomplete, decode_mesh, referenced_names
from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ROUTE
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

from .xds_cases import RICH, Resources, mesh, over_the_wire

ADMIN = mesh(load_filter_types()).admin


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


@pytest.fixture
def res(types: FilterTypes) -> Resources:
    return over_the_wire(encode_mesh(mesh(types)))


def decode(res: Resources, types: Any) -> Any:
    return decode_mesh(res, types, version="v1", admin=ADMIN)


def _hcm(res: Resources, listener: str) -> Any:
    hcm = hcm_pb2.HttpConnectionManager()
    res[LISTENER][listener].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def _set_hcm(res: Resources, listener: str, hcm: Any) -> None:
    res[LISTENER][listener].filter_chains[0].filters[0].typed_config.Pack(hcm)


def test_unknown_filter_type_names_the_listener_and_the_filter(types: FilterTypes) -> None:
    text = RICH.replace("    - type: response-header-modifier\n", "    - type: rate-limit\n")
    res = encode_mesh(mesh(types, text, unknown_filters=True))
    with pytest.raises(ConfigError) as err:
        decode(res, types)
    known = ", ".join(sorted(types))
    assert str(err.value) == (
        "Listener outbound|18080: http_filters[0] 'rate-limit': "
        f"unknown filter type 'rate-limit' (known: {known})"
    )


def test_a_filter_config_the_filter_rejects_names_the_field(res: Resources, types: Any) -> None:
    key = "web.default:8080"
    route = res[ROUTE][key].virtual_hosts[0].routes[0]
    filters = route.metadata.filter_metadata["plait"].fields["filters"]
    filters.list_value.values[0].struct_value.fields["config"].struct_value.fields["set"].Clear()
    filters.list_value.values[0].struct_value.fields["config"].struct_value.fields[
        "set"
    ].string_value = "nope"
    with pytest.raises(ConfigError, match=re.escape(f"RouteConfiguration {key}: ")) as err:
        decode(res, types)
    assert "metadata.plait.filters[0] 'request-header-modifier'.config" in str(err.value)


def test_missing_route_configuration_is_incomplete(res: Resources, types: Any) -> None:
    del res[ROUTE]["web.default:9090"]
    with pytest.raises(Incomplete) as err:
        decode(res, types)
    assert err.value.missing == {ROUTE: frozenset({"web.default:9090"})}
    assert str(err.value) == "waiting for RouteConfiguration web.default:9090"


def test_missing_endpoints_and_clusters_are_incomplete(res: Resources, types: Any) -> None:
    del res[ENDPOINT]["web.default:8080"]
    del res[CLUSTER]["web-v2.default:8080"], res[CLUSTER]["db.default:5432"]
    with pytest.raises(Incomplete) as err:
        decode(res, types)
    assert err.value.missing == {
        ENDPOINT: frozenset({"web.default:8080"}),
        CLUSTER: frozenset({"web-v2.default:8080", "db.default:5432"}),
    }


def test_a_bad_resource_is_reported_before_missing_ones(res: Resources, types: Any) -> None:
    del res[ROUTE]["web.default:9090"]
    res[CLUSTER]["web.default:8080"].lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
    with pytest.raises(ConfigError, match=r"^Cluster web.default:8080: lb_policy: expected"):
        decode(res, types)


def test_stale_endpoints_without_a_cluster_are_ignored(res: Resources, types: Any) -> None:
    stale = type(res[ENDPOINT]["web.default:8080"])(cluster_name="gone")
    res[ENDPOINT]["gone"] = stale
    assert "gone" not in decode(res, types).clusters


def test_endpoint_address_must_be_an_ip(res: Resources, types: Any) -> None:
    lb = res[ENDPOINT]["web.default:8080"].endpoints[0].lb_endpoints[0]
    lb.endpoint.address.socket_address.address = "web.example.com"
    with pytest.raises(ConfigError) as err:
        decode(res, types)
    assert str(err.value) == (
        "ClusterLoadAssignment web.default:8080: endpoints[0].lb_endpoints[0]."
        "endpoint.address.address: expected an IP address, got 'web.example.com'"
    )


def test_listener_address_must_be_an_ip(res: Resources, types: Any) -> None:
    res[LISTENER]["outbound|18080"].address.socket_address.address = "localhost"
    with pytest.raises(ConfigError, match=r"^Listener outbound\|18080: address"):
        decode(res, types)


def test_unknown_network_filter(res: Resources, types: Any) -> None:
    res[LISTENER]["outbound|18080"].filter_chains[0].filters[0].typed_config.Pack(
        router_pb2.Router()
    )
    with pytest.raises(
        ConfigError, match=re.escape("unknown network filter type 'envoy.extensions")
    ):
        decode(res, types)


def test_router_must_be_last(res: Resources, types: Any) -> None:
    hcm = _hcm(res, "outbound|18080")
    router = hcm_pb2.HttpFilter()
    router.CopyFrom(hcm.http_filters[-1])
    del hcm.http_filters[-1]
    hcm.http_filters.insert(0, router)
    _set_hcm(res, "outbound|18080", hcm)
    with pytest.raises(ConfigError, match=re.escape("expected envoy.filters.http.router last")):
        decode(res, types)


def test_fields_plait_cannot_honour_are_refused(res: Resources, types: Any) -> None:
    route = res[ROUTE]["web.default:8080"].virtual_hosts[0].routes[0]
    route.route.cors.SetInParent()
    route.route.cors.allow_credentials.value = True
    with pytest.raises(ConfigError, match=r"route\.cors: RouteAction\.cors is not supported"):
        decode(res, types)


def test_inline_routes_are_refused(res: Resources, types: Any) -> None:
    hcm = _hcm(res, "outbound|18080")
    hcm.route_config.name = "inline"
    _set_hcm(res, "outbound|18080", hcm)
    with pytest.raises(
        ConfigError, match=re.escape("HttpConnectionManager.route_config is not supported")
    ):
        decode(res, types)


def test_a_character_wise_prefix_is_refused(res: Resources, types: Any) -> None:
    table = res[ROUTE]["web.default:8080"]
    route = table.virtual_hosts[0].routes.add(name="foreign")
    route.match.prefix = "/api"
    route.route.cluster = "web.default:8080"
    with pytest.raises(ConfigError, match="prefix '/api' matches character-wise"):
        decode(res, types)


def test_the_routes_of_a_rule_must_be_consecutive(res: Resources, types: Any) -> None:
    routes = res[ROUTE]["web.default:8080"].virtual_hosts[0].routes
    routes.add().CopyFrom(routes[0])
    with pytest.raises(ConfigError, match="the Routes of rule 0 are not consecutive"):
        decode(res, types)


def test_only_a_500_direct_response(res: Resources, types: Any) -> None:
    routes = res[ROUTE]["web.default:8080"].virtual_hosts[0].routes
    for gone in (r for r in routes if r.HasField("direct_response")):
        gone.direct_response.status = 404  # both halves of PathPrefix /gone
    with pytest.raises(ConfigError, match=r"direct_response.status: expected 500"):
        decode(res, types)


def test_other_pseudo_headers_are_refused(res: Resources, types: Any) -> None:
    route = res[ROUTE]["web.default:8080"].virtual_hosts[0].routes[0]
    route.match.headers.add(name=":authority").string_match.exact = "x"
    with pytest.raises(ConfigError, match="only :method"):
        decode(res, types)


def test_mesh_wide_settings_must_agree(res: Resources, types: Any) -> None:
    hcm = _hcm(res, "outbound|18090")
    hcm.max_request_headers_kb.value = 12
    _set_hcm(res, "outbound|18090", hcm)
    with pytest.raises(ConfigError, match="max_request_headers_kb differs"):
        decode(res, types)


def test_unhealthy_endpoints_get_no_traffic(res: Resources, types: Any) -> None:
    lbs = res[ENDPOINT]["web.default:8080"].endpoints[0].lb_endpoints
    lbs[0].health_status = health_check_pb2.DRAINING
    eps = decode(res, types).clusters["web.default:8080"].endpoints
    assert [e.address for e in eps] == ["fd00::2"]


def test_resources_packed_in_any_are_accepted(res: Resources, types: Any) -> None:
    packed: Resources = {}
    for t, by_name in res.items():
        packed[t] = {}
        for name, msg in by_name.items():
            packed[t][name] = any_pb2.Any()
            packed[t][name].Pack(msg)
    assert decode(packed, types).listeners == decode(res, types).listeners


def test_a_resource_of_the_wrong_type_or_name(res: Resources, types: Any) -> None:
    res[ROUTE]["web.default:8080"].name = "other"
    with pytest.raises(ConfigError, match="named 'other'"):
        decode(res, types)
    res[ROUTE]["web.default:8080"] = route_components_pb2.Route()
    with pytest.raises(
        ConfigError, match=re.escape("expected a envoy.config.route.v3.RouteConfiguration")
    ):
        decode(res, types)


def test_referenced_names(res: Resources) -> None:
    assert referenced_names(res) == {
        ROUTE: {"web.default:8080", "web.default:9090", "web.default:50051", "inbound|18201"},
        ENDPOINT: set(res[CLUSTER]),
    }
    assert referenced_names({}) == {ROUTE: set(), ENDPOINT: set()}


def test_an_endpoint_identity_must_be_a_spiffe_id(res: Resources, types: Any) -> None:
    from google.protobuf import struct_pb2

    lb = res[ENDPOINT]["web.default:8080"].endpoints[0].lb_endpoints[0]
    facts = struct_pb2.Struct()
    facts.update({"identity": "spiffe://UPPER/ns/a/sa/b"})
    lb.metadata.filter_metadata["plait"].CopyFrom(facts)
    with pytest.raises(ConfigError) as err:
        decode(res, types)
    assert str(err.value).startswith(
        "ClusterLoadAssignment web.default:8080: endpoints[0].lb_endpoints[0]."
        "metadata.plait.identity: expected a SPIFFE ID: "
    )
