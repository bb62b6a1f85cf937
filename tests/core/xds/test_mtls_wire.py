"""Inbound peer authentication over LDS: Envoy's shapes, round trip, and what is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from plait.core.config import MeshConfig, MtlsMode, Protocol
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

from .xds_cases import assert_same, mesh, round_trip

AUTHZ = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: front-only, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["plait.local/ns/default/sa/front"]}}]}]
"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def with_mtls(cfg: MeshConfig, mode: MtlsMode | None) -> MeshConfig:
    listeners = tuple(
        dataclasses.replace(lis, mtls=mode) if lis.name.startswith("inbound") else lis
        for lis in cfg.listeners
    )
    assert listeners != cfg.listeners or mode is None
    return dataclasses.replace(cfg, listeners=listeners)


def listener_msg(cfg: MeshConfig) -> Any:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds.wire import LISTENER

    lis = next(lis for lis in cfg.listeners if lis.name.startswith("inbound"))
    return encode_mesh(cfg)[LISTENER][lis.name]


@pytest.mark.parametrize("mode", [*MtlsMode, None])
def test_every_mode_round_trips(types: FilterTypes, mode: MtlsMode | None) -> None:
    cfg = with_mtls(mesh(types), mode)
    got = round_trip(cfg, types)
    assert_same(got, cfg)
    assert {lis.mtls for lis in got.listeners if lis.name.startswith("inbound")} == {mode}


def test_envoy_shapes(types: FilterTypes) -> None:
    strict = listener_msg(with_mtls(mesh(types), MtlsMode.STRICT))
    assert len(strict.filter_chains) == 1
    assert strict.filter_chains[0].transport_socket.name == "envoy.transport_sockets.tls"
    permissive = listener_msg(with_mtls(mesh(types), MtlsMode.PERMISSIVE))
    matches = [c.filter_chain_match.transport_protocol for c in permissive.filter_chains]
    assert matches == ["tls", "raw_buffer"]
    assert [f.name for f in permissive.listener_filters] == ["envoy.filters.listener.tls_inspector"]


def test_permissive_chains_that_differ_are_refused(types: FilterTypes) -> None:
    from plait.core.xds._decode_listener import decode_listener

    msg = listener_msg(with_mtls(mesh(types), MtlsMode.PERMISSIVE))
    msg.filter_chains[1].filters[0].name = "something.else"
    with pytest.raises(ConfigError) as err:
        decode_listener(msg, types)
    assert "filter_chains[1].filters" in err.value.field


def test_strict_without_a_required_client_certificate_is_refused(types: FilterTypes) -> None:
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # type: ignore[import-untyped]

    from plait.core.xds._decode_listener import decode_listener

    msg = listener_msg(with_mtls(mesh(types), MtlsMode.STRICT))
    ctx = tls_pb2.DownstreamTlsContext()
    msg.filter_chains[0].transport_socket.typed_config.Unpack(ctx)
    ctx.common_tls_context.validation_context_sds_secret_config.name = "other"
    msg.filter_chains[0].transport_socket.typed_config.Pack(ctx)
    with pytest.raises(ConfigError) as err:
        decode_listener(msg, types)
    assert "validation_context_sds_secret_config" in err.value.field


def test_authorization_policies_travel_as_the_filter(types: FilterTypes) -> None:
    from tests.core.xds.xds_cases import RICH

    cfg = mesh(types, RICH + AUTHZ, sidecar=None)
    inbound = [lis for lis in cfg.listeners if lis.name.startswith("inbound")]
    assert inbound and all(
        lis.filters[0].type == "authorization" for lis in inbound if lis.protocol is Protocol.HTTP
    )
    assert_same(round_trip(cfg, types), cfg)


TCP_INGRESS = """  - port: {number: 18202, protocol: tcp}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:18092
"""


def test_a_tcp_listener_carries_authorization_as_a_network_filter(types: FilterTypes) -> None:
    from plait.controlplane.xds._encode import encode_mesh
    from plait.core.xds._decode_listener import decode_listener
    from plait.core.xds.wire import LISTENER
    from tests.core.xds.xds_cases import RICH

    cfg = mesh(types, RICH + TCP_INGRESS + AUTHZ, sidecar=None)
    tcp = next(lis for lis in cfg.listeners if lis.protocol is Protocol.TCP and
               lis.name.startswith("inbound"))  # fmt: skip
    assert [f.type for f in tcp.filters] == ["authorization"]
    assert_same(round_trip(cfg, types), cfg)

    msg = encode_mesh(cfg)[LISTENER][tcp.name]
    names = [f.name for f in msg.filter_chains[0].filters]
    assert names == ["authorization", "envoy.filters.network.tcp_proxy"]

    # a filter that decides requests cannot sit on a tcp listener: refused by name
    http_only = next(lis for lis in cfg.listeners if lis.filters and
                     lis.filters[0].type != "authorization")  # fmt: skip
    other = encode_mesh(cfg)[LISTENER][http_only.name]
    hcm_typed = other.filter_chains[0].filters[0].typed_config
    from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
        http_connection_manager_pb2 as hcm_pb2,
    )

    hcm = hcm_pb2.HttpConnectionManager()
    hcm_typed.Unpack(hcm)
    stray = msg.filter_chains[0].filters[0]
    stray.name = hcm.http_filters[0].name
    stray.typed_config.CopyFrom(hcm.http_filters[0].typed_config)
    with pytest.raises(ConfigError) as err:
        decode_listener(msg, types)
    assert "filters[0]" in err.value.field
    assert "a tcp listener runs only filters that decide connections" in str(err.value)
