"""The encoder's standard xDS shapes: what Envoy and gRPC's proxyless clients read."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2  # type: ignore[import-untyped]
from envoy.extensions.access_loggers.file.v3 import file_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.http.router.v3 import router_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import (  # type: ignore[import-untyped]
    tcp_proxy_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # type: ignore[import-untyped]
from envoy.extensions.upstreams.http.v3 import (  # type: ignore[import-untyped]
    http_protocol_options_pb2 as upstream_http,
)
from xds.type.v3 import typed_struct_pb2  # type: ignore[import-untyped]

from plait.controlplane.xds._encode import encode_api_listener, encode_mesh
from plait.core.config import Endpoint, ListenerTLS, MeshConfig
from plait.core.xds.wire import (
    CLUSTER,
    ENDPOINT,
    FILTER_TYPE_URL,
    HTTP_PROTOCOL_OPTIONS,
    LISTENER,
    ORDER,
    ROUTE,
    from_struct,
)
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError
from tests.core.xds.xds_cases import RICH, Resources, mesh


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


@pytest.fixture(scope="module")
def cfg(types: FilterTypes) -> MeshConfig:
    return mesh(types)


@pytest.fixture(scope="module")
def res(cfg: MeshConfig) -> Resources:
    return encode_mesh(cfg)


def _unpack(packed: Any, cls: Any) -> Any:
    assert packed.TypeName() == cls.DESCRIPTOR.full_name
    out = cls()
    packed.Unpack(out)
    return out


def _hcm(listener: Any) -> Any:
    (chain,) = listener.filter_chains
    (network,) = chain.filters
    assert network.name == "envoy.filters.network.http_connection_manager"
    return _unpack(network.typed_config, hcm_pb2.HttpConnectionManager)


def _ads(source: Any) -> bool:
    return bool(source.HasField("ads") and source.resource_api_version == config_source_pb2.V3)


def test_every_type_is_present(res: Resources) -> None:
    assert set(res) == set(ORDER)
    empty = encode_mesh(MeshConfig(version="x", listeners=(), clusters={}, routes={}))
    assert empty == {t: {} for t in ORDER}


def test_http_listener(res: Resources) -> None:
    lis = res[LISTENER]["outbound|18080"]
    assert lis.name == "outbound|18080"
    assert (lis.address.socket_address.address, lis.address.socket_address.port_value) == (
        "127.0.0.1",
        18080,
    )
    assert lis.traffic_direction == base_pb2.OUTBOUND
    assert res[LISTENER]["inbound|18201"].traffic_direction == base_pb2.INBOUND
    hcm = _hcm(lis)
    assert hcm.codec_type == hcm_pb2.HttpConnectionManager.AUTO
    assert _ads(hcm.rds.config_source) and hcm.rds.route_config_name == "web.default:8080"
    assert hcm.request_timeout.seconds == 15 and hcm.request_headers_timeout.seconds == 3
    assert hcm.common_http_protocol_options.idle_timeout.seconds == 1200
    assert hcm.stream_idle_timeout.seconds == 1200
    assert hcm.max_request_headers_kb.value == 96
    (log,) = hcm.access_log
    assert _unpack(log.typed_config, file_pb2.FileAccessLog).path == "/dev/stdout"
    assert from_struct(lis.metadata.filter_metadata["plait"]) == {
        "protocol": "http",
        "order": 0,
        "timeouts": {"drain": 7},
    }


def test_http_filters_are_plait_filters_then_the_router(res: Resources) -> None:
    first, router = _hcm(res[LISTENER]["outbound|18080"]).http_filters
    assert first.name == "response-header-modifier"
    typed = _unpack(first.typed_config, typed_struct_pb2.TypedStruct)
    assert typed.type_url == FILTER_TYPE_URL
    assert from_struct(typed.value) == {
        "type": "response-header-modifier",
        "config": {"add": [{"name": "x-n", "value": "1"}]},
        "failStrategy": "FailOpen",
    }
    assert router.name == "envoy.filters.http.router"
    _unpack(router.typed_config, router_pb2.Router)


def test_no_request_timeout_means_none_in_envoy_too(res: Resources) -> None:
    assert not _hcm(res[LISTENER]["outbound|18090"]).HasField("request_timeout")


def test_tcp_listener(res: Resources) -> None:
    (chain,) = res[LISTENER]["outbound|15432"].filter_chains
    (network,) = chain.filters
    assert network.name == "envoy.filters.network.tcp_proxy"
    proxy = _unpack(network.typed_config, tcp_proxy_pb2.TcpProxy)
    assert proxy.cluster == "db.default:5432" and proxy.idle_timeout.seconds == 1800
    assert proxy.stat_prefix == "outbound|15432" and len(proxy.access_log) == 1


def test_tls_listener(cfg: MeshConfig) -> None:
    tls = ListenerTLS(cert_file="/c.pem", key_file="/k.pem")
    listeners = (dataclasses.replace(cfg.listeners[-1], tls=tls),)
    lis = encode_mesh(dataclasses.replace(cfg, listeners=listeners))[LISTENER]["inbound|18201"]
    socket = lis.filter_chains[0].transport_socket
    assert socket.name == "envoy.transport_sockets.tls"
    ctx = _unpack(socket.typed_config, tls_pb2.DownstreamTlsContext).common_tls_context
    assert list(ctx.alpn_protocols) == ["h2", "http/1.1"]
    (cert,) = ctx.tls_certificates
    assert (cert.certificate_chain.filename, cert.private_key.filename) == ("/c.pem", "/k.pem")


def test_api_listener_for_grpc_proxyless_clients() -> None:
    lis = encode_api_listener("greeter.default:50051", "greeter.default:50051")
    assert lis.name == "greeter.default:50051" and not lis.filter_chains
    hcm = _unpack(lis.api_listener.api_listener, hcm_pb2.HttpConnectionManager)
    assert _ads(hcm.rds.config_source)
    assert hcm.rds.route_config_name == "greeter.default:50051"
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]
    _unpack(hcm.http_filters[-1].typed_config, router_pb2.Router)


@pytest.mark.parametrize(
    ("name", "h2"),
    [("web.default:8080", False), ("web.default:9090", True), ("web.default:50051", True)],
)
def test_http_clusters(res: Resources, name: str, h2: bool) -> None:
    c = res[CLUSTER][name]
    assert c.type == cluster_pb2.Cluster.EDS and c.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert _ads(c.eds_cluster_config.eds_config) and c.eds_cluster_config.service_name == name
    assert c.connect_timeout.seconds == 10
    opts = _unpack(
        c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS],
        upstream_http.HttpProtocolOptions,
    )
    assert opts.explicit_http_config.HasField("http2_protocol_options") is h2
    assert opts.explicit_http_config.HasField("http_protocol_options") is not h2
    assert opts.common_http_protocol_options.idle_timeout.seconds == 3600


def test_tcp_cluster_has_no_http_options(res: Resources) -> None:
    c = res[CLUSTER]["db.default:5432"]
    assert not c.typed_extension_protocol_options
    assert from_struct(c.metadata.filter_metadata["plait"]) == {
        "protocol": "tcp",
        "maxIdlePerEndpoint": 1024,
    }


def test_endpoints(res: Resources) -> None:
    (locality,) = res[ENDPOINT]["web.default:8080"].endpoints
    assert locality.load_balancing_weight.value == 1  # gRPC drops localities without one
    first, second = locality.lb_endpoints
    assert first.endpoint.address.socket_address.address == "10.0.0.1"
    assert first.load_balancing_weight.value == 3
    assert first.health_status == health_check_pb2.HEALTHY
    labels = from_struct(first.metadata.filter_metadata["plait"])["labels"]
    assert labels == {"version": "v1", "zone": "a"}
    assert second.endpoint.address.socket_address.address == "fd00::2"
    assert not second.HasField("metadata")
    assert not res[ENDPOINT]["empty.default:8080"].endpoints


def test_dns_endpoints_cannot_travel(cfg: MeshConfig) -> None:
    c = cfg.clusters["web.default:8080"]
    clusters = {c.name: dataclasses.replace(c, endpoints=(Endpoint(address="db.local", port=1),))}
    with pytest.raises(
        ConfigError, match=re.escape("ClusterLoadAssignment web.default:8080: endpoints")
    ):
        encode_mesh(dataclasses.replace(cfg, clusters=clusters))


def _routes(res: Resources, key: str = "web.default:8080") -> list[Any]:
    table = res[ROUTE][key]
    (vhost,) = table.virtual_hosts
    assert table.name == key and list(vhost.domains) == ["*"]
    return list(vhost.routes)


def test_path_matches(res: Resources) -> None:
    routes = _routes(res)
    assert routes[0].match.path == "/exact"
    api = [r for r in routes if r.match.path == "/api" or r.match.prefix == "/api/"]
    assert [r.match.WhichOneof("path_specifier") for r in api] == ["path", "prefix"]
    facts = from_struct(api[0].metadata.filter_metadata["plait"])
    assert facts["pathValue"] == "/api/" and facts["match"] == 0  # the translator expands rules
    assert all(r.match.headers[0].name == ":method" for r in api)
    assert all(r.match.headers[0].string_match.exact == "POST" for r in api)
    regex = next(r for r in routes if r.match.HasField("safe_regex"))
    assert regex.match.safe_regex.regex == "/re/[0-9]+"
    headers = {h.name: h.string_match for h in regex.match.headers}
    assert headers["x-env"].exact == "prod" and headers["x-id"].safe_regex.regex == "[a-f]+"
    query = {q.name: q.string_match for q in regex.match.query_parameters}
    assert query["q"].exact == "1" and query["Page"].safe_regex.regex == "[0-9]+"
    rest = next(r for r in routes if r.name == "default/web/rest")
    assert rest.match.prefix == "/"  # the rule without matches: PathPrefix /


def test_actions(res: Resources) -> None:
    routes = {r.name: r for r in _routes(res)}
    multi = routes["default/web/multi"].route
    assert [(c.name, c.weight.value) for c in multi.weighted_clusters.clusters] == [
        ("web.default:8080", 3),
        ("web-v2.default:8080", 1),
    ]
    assert multi.timeout.ToMilliseconds() == 2500
    assert multi.retry_policy.per_try_timeout.ToMilliseconds() == 500
    assert not multi.retry_policy.retry_on  # a timeout per try, no Envoy retries
    heavy = routes["default/web/heavy"].route  # one backend, weight 7: still weighted
    assert [(c.name, c.weight.value) for c in heavy.weighted_clusters.clusters] == [
        ("web-v2.default:8080", 7)
    ]
    rest = routes["default/web/rest"].route
    assert rest.cluster == "web.default:8080"
    assert rest.HasField("timeout") and rest.timeout.ToNanoseconds() == 0  # none, not 15 s
    assert not rest.HasField("retry_policy")
    assert routes["default/web/gone"].direct_response.status == 500


def test_rule_filters_travel_without_the_weighted_split(res: Resources) -> None:
    route = next(r for r in _routes(res) if r.name == "default/web/multi")
    facts = from_struct(route.metadata.filter_metadata["plait"])
    assert facts["filters"] == [
        {
            "name": "request-header-modifier",
            "type": "request-header-modifier",
            "config": {"set": [{"name": "x-route", "value": "multi"}]},
            "failStrategy": "FailClosed",
        }
    ]
    assert facts["rule"] == 0


def test_unknown_filters_travel_as_written(types: FilterTypes) -> None:
    text = RICH.replace(
        "    - type: response-header-modifier\n",
        "    - type: rate-limit\n      config: {rps: 10}\n    - type: response-header-modifier\n",
    )
    res = encode_mesh(mesh(types, text, unknown_filters=True))
    first = _hcm(res[LISTENER]["outbound|18080"]).http_filters[0]
    value = from_struct(_unpack(first.typed_config, typed_struct_pb2.TypedStruct).value)
    assert value == {"type": "rate-limit", "config": {"rps": 10}, "failStrategy": "FailClosed"}


def test_a_config_that_is_not_json_is_refused(cfg: MeshConfig) -> None:
    lis = cfg.listeners[0]
    entry = dataclasses.replace(lis.filters[0], raw_config={"n": 2**60})
    listeners = (dataclasses.replace(lis, filters=(entry,)),)
    with pytest.raises(ConfigError, match=r"Listener outbound\|18080: http_filters\[0\]"):
        encode_mesh(dataclasses.replace(cfg, listeners=listeners))
