"""The registry and the per-node views, in an in-process control plane over real sockets.

A "sidecar" here is a raw ADS stream announcing plait's node metadata (what
``plait sidecar --control-plane`` sends); the workload's inbound port is a real
TCP listener the test opens and closes, which is what the health check probes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from cryptography import x509
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # type: ignore[import-untyped]
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]

from plait.controlplane._mesh import MeshSource
from plait.controlplane._registry import Registry
from plait.controlplane._xds_service import xds_service
from plait.controlplane.server import ControlPlaneOptions, RunningControlPlane, run_control_plane
from plait.controlplane.store import Key
from plait.controlplane.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, NodeInfo
from tests.support.ca import key_pem, make_csr

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def control_plane(
    tmp: Path, trust_domain: str = "plait.local", **extras: Any
) -> AsyncIterator[RunningControlPlane]:
    opts = ControlPlaneOptions(data_dir=tmp, api_port=0, xds_port=0, trust_domain=trust_domain)
    async with anyio.create_task_group() as tg:
        running: RunningControlPlane = await tg.start(
            partial(
                run_control_plane, opts, services=[xds_service], handle_signals=False, extras=extras
            )
        )
        yield running
        tg.cancel_scope.cancel()


async def apply(cp: RunningControlPlane, *docs: dict[str, Any]) -> None:
    for doc in docs:
        await cp.context.api.write(doc, "test")


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    api = "gateway.networking.k8s.io/v1" if kind == "HTTPRoute" else "plait.dev/v1alpha1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


def node(
    node_id: str, sidecar: str | None = None, admin: dict[str, Any] | None = None, **workload: Any
) -> NodeInfo:
    meta: dict[str, Any] = {}
    if sidecar:
        meta["plait"] = {"sidecar": sidecar, "namespace": "default"}
        if admin is not None:
            meta["plait"]["admin"] = admin
        if workload:
            meta["plait"]["workload"] = workload
    return NodeInfo(id=node_id, metadata_json=json.dumps(meta, sort_keys=True), metadata=meta)


def certificate(cp: RunningControlPlane, info: NodeInfo) -> tuple[bytes, bytes]:
    """``(key PEM, chain PEM)`` from the control plane's CA for the identity ``info`` may be:
    its namespace and its Workload's service account (the xDS port requires it)."""
    plait_meta = info.metadata.get("plait") or {}
    account = (plait_meta.get("workload") or {}).get("serviceAccount") or "default"
    service = cp.context.api.ca.service  # type: ignore[union-attr]
    spiffe_id = f"spiffe://{service.ca.trust_domain}/ns/default/sa/{account}"
    key, csr_pem = make_csr()
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    issued = service.ca.issue(csr, spiffe_id, service.leaf_ttl, counted=False)
    return key_pem(key), bytes(issued.chain_pem)


@asynccontextmanager
async def ads_stream(cp: RunningControlPlane, info: NodeInfo) -> AsyncIterator[None]:
    """An ADS stream that announces ``info`` and stays open."""
    metadata = struct_pb2.Struct()
    json_format.ParseDict(dict(info.metadata), metadata)
    proto = base_pb2.Node(id=info.id, metadata=metadata)
    port = cp.context.extras["xds_port"]
    assert cp.ca_bundle is not None
    key, chain = certificate(cp, info)
    tls = grpc.ssl_channel_credentials(
        root_certificates=cp.ca_bundle.read_bytes(), private_key=key, certificate_chain=chain
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", tls) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=proto))
        await call.read()
        yield
        call.cancel()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    with anyio.fail_after(timeout):
        while not (result := check()):
            await anyio.sleep(0.02)
    return result


def endpoints(source: MeshSource, viewer: NodeInfo, cluster: str) -> list[str]:
    cla = source.resources(viewer, ENDPOINT, frozenset({cluster})).get(cluster)
    if cla is None:
        return []
    return [
        f"{lb.endpoint.address.socket_address.address}:"
        f"{lb.endpoint.address.socket_address.port_value}"
        for loc in cla.endpoints
        for lb in loc.lb_endpoints
    ]


async def test_registration_health_checks_and_grace_period(tmp_path: Path) -> None:
    inbound = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = inbound.extra(anyio.abc.SocketAttribute.local_port)
    async with control_plane(tmp_path, workload_grace=0.5, health_interval=0.1) as cp:
        await apply(
            cp,
            doc("Service", "web", {"ports": [{"port": 8080}]}),
            doc("Sidecar", "web", {"ingress": [{"port": {"number": port},
                                                "defaultEndpoint": "127.0.0.1:9"}]}),
            doc("Sidecar", "caller", {"egress": [{"port": {"number": 18080}, "service": "web"}]}),
        )  # fmt: skip
        source: MeshSource = cp.context.extras["source"]
        registry: Registry = cp.context.extras["registry"]
        caller = node("caller-0", "caller")
        web = node("web-0", "web", service="web", address="127.0.0.1", labels={"version": "v3"})
        async with ads_stream(cp, web):

            def registered() -> Any:
                row = registry.status("default", "web-0")
                return row if row and row["workload"] else None

            stored = await eventually(registered)
            assert stored["connected"] is True
            wl = await cp.context.store.get(Key("Workload", "default", "web-0"))
            assert wl is not None
            assert wl.document["spec"]["ports"] == [{"port": 8080, "targetPort": port}]
            # its --labels, and the Sidecar's name its own metrics report it by
            assert wl.document["spec"]["labels"] == {"workload": "web", "version": "v3"}
            here = f"127.0.0.1:{port}"
            await eventually(lambda: endpoints(source, caller, "web.default:8080") == [here])

            await inbound.aclose()  # the instance stops accepting: health checks fail
            await eventually(lambda: endpoints(source, caller, "web.default:8080") == [])
            row = registry.status("default", "web-0")
            assert row is not None and not row["ok"]
            assert any("failing health checks" in p for p in row["problems"])

        # gone: kept for the grace period, then deleted (and out of EDS)
        def gone() -> bool:
            row = registry.status("default", "web-0")
            return row is not None and row["connected"] is False

        await eventually(gone)
        assert await cp.context.store.get(Key("Workload", "default", "web-0")) is not None
        with anyio.fail_after(5):
            while await cp.context.store.get(Key("Workload", "default", "web-0")) is not None:
                await anyio.sleep(0.05)


async def test_the_registry_knows_where_each_sidecars_admin_listener_is(tmp_path: Path) -> None:
    """A specific bind is used as announced; a wildcard bind is reached at the address the
    xDS stream came from; a malformed announcement gives no address rather than a wrong one."""
    async with control_plane(tmp_path) as cp:
        await apply(cp, doc("Sidecar", "a", {}))
        registry: Registry = cp.context.extras["registry"]
        cases: dict[str, tuple[dict[str, Any], str | None]] = {
            "specific": ({"bind": "127.0.0.7", "port": 15123}, "127.0.0.7:15123"),
            "wildcard": ({"bind": "0.0.0.0", "port": 15124}, "127.0.0.1:15124"),
            "no-port": ({"bind": "127.0.0.1"}, None),
            "bad-port": ({"bind": "127.0.0.1", "port": 70000}, None),
        }
        for name, (admin, expected) in cases.items():
            async with ads_stream(cp, node(name, "a", admin=admin)):
                row = await eventually(partial(registry.status, "default", name))
                assert row["admin"] == expected, name


async def test_a_sidecar_sees_only_what_it_calls_and_grpc_clients_get_api_listeners(
    tmp_path: Path,
) -> None:
    async with control_plane(tmp_path, health_interval=0) as cp:
        services = [
            doc("Service", name, {"ports": [{"port": 8080, "protocol": proto}],
                                  "endpoints": [{"address": "127.0.0.1", "port": 9000 + i}]})
            for i, (name, proto) in enumerate((("a", "http"), ("b", "grpc"), ("c", "http")))
        ]  # fmt: skip
        await apply(
            cp,
            *services,
            doc("Sidecar", "s1", {"egress": [{"port": {"number": 18080}, "service": "a"}]}),
        )
        source: MeshSource = cp.context.extras["source"]
        await eventually(lambda: source.resources(node("x", "s1"), LISTENER, None))
        s1 = node("s1-0", "s1")
        assert list(source.resources(s1, LISTENER, None)) == ["outbound|18080"]
        assert list(source.resources(s1, CLUSTER, None)) == ["a.default:8080"]
        assert list(source.resources(s1, ROUTE, frozenset({"a.default:8080"}))) == [
            "a.default:8080"
        ]
        # named resources resolve mesh-wide (make-before-break for subscribers)
        assert list(source.resources(s1, CLUSTER, frozenset({"c.default:8080"}))) == [
            "c.default:8080"
        ]
        # a gRPC proxyless client asks for listeners by target name
        grpc_node = node("grpc-client")
        got = source.resources(grpc_node, LISTENER, frozenset({"b", "b.default:8080", "nope"}))
        assert sorted(got) == ["b", "b.default:8080"]
        assert source.resources(grpc_node, LISTENER, None) == {}
        route = source.resources(grpc_node, ROUTE, frozenset({"b.default:8080"}))
        assert list(route) == ["b.default:8080"]  # a pass-through table: no HTTPRoute on b


def endpoint_facts(source: MeshSource, viewer: NodeInfo, cluster: str) -> list[dict[str, Any]]:
    """The plait metadata of each endpoint of ``cluster`` in ``viewer``'s EDS."""
    cla = source.resources(viewer, ENDPOINT, frozenset({cluster})).get(cluster)
    if cla is None:
        return []
    return [
        json_format.MessageToDict(lb.metadata.filter_metadata["plait"])
        for loc in cla.endpoints
        for lb in loc.lb_endpoints
    ]


async def test_a_sidecar_with_an_identity_registers_mutual_tls_in_the_trust_domain(
    tmp_path: Path,
) -> None:
    async with control_plane(tmp_path, trust_domain="corp.example") as cp:
        await apply(
            cp,
            doc("Service", "web", {"ports": [{"port": 8080}]}),
            doc("Service", "legacy", {"ports": [{"port": 8080}]}),
            doc("Sidecar", "web", {"ingress": [{"port": {"number": 18001},
                                                "defaultEndpoint": "127.0.0.1:9"}]}),
            doc("Sidecar", "legacy", {"ingress": [{"port": {"number": 18002},
                                                   "defaultEndpoint": "127.0.0.1:9"}]}),
            doc("Sidecar", "caller", {"egress": [
                {"port": {"number": 18080}, "service": "web"},
                {"port": {"number": 18081}, "service": "legacy"}]}),
        )  # fmt: skip
        source: MeshSource = cp.context.extras["source"]
        caller = node("caller-0", "caller")
        web = node("web-0", "web", service="web", serviceAccount="web", identity="agent")
        legacy = node("legacy-0", "legacy", service="legacy", identity="none of these")
        async with ads_stream(cp, web), ads_stream(cp, legacy):
            web_facts = await eventually(lambda: endpoint_facts(source, caller, "web.default:8080"))
            legacy_facts = await eventually(
                lambda: endpoint_facts(source, caller, "legacy.default:8080")
            )
            stored = await cp.context.store.get(Key("Workload", "default", "web-0"))
            plain = await cp.context.store.get(Key("Workload", "default", "legacy-0"))
            # the registry shows which certificate each node's stream was verified with
            shown = cp.context.extras["registry"].status("default", "web-0")
        assert shown is not None and shown["identity"] == "spiffe://corp.example/ns/default/sa/web"
        assert stored is not None and plain is not None
        assert stored.document["spec"]["tlsMode"] == "mutual"
        assert "tlsMode" not in plain.document["spec"]
        # the caller expects the identity the CA issues: the control plane's trust domain
        assert web_facts == [{
            "identity": "spiffe://corp.example/ns/default/sa/web", "mtls": True,
            "labels": {"workload": "web"},
        }]  # fmt: skip
        assert legacy_facts[0].get("mtls") is None


async def test_a_node_id_registered_over_tls_stays_its_identitys_across_a_restart(
    tmp_path: Path,
) -> None:
    mesh = (
        doc("Service", "web", {"ports": [{"port": 8080}]}),
        doc("Sidecar", "web", {"ingress": [{"port": {"number": 18001},
                                            "defaultEndpoint": "127.0.0.1:9"}]}),
    )  # fmt: skip
    web = node("web-0", "web", service="web", serviceAccount="web", identity="agent")
    async with control_plane(tmp_path) as cp:
        await apply(cp, *mesh)
        async with ads_stream(cp, web):
            stored = await eventually(
                lambda: cp.context.extras["registry"].status("default", "web-0")
            )
            with anyio.fail_after(5):
                while (saved := await cp.context.store.get(Key("Workload", "default", "web-0"))) \
                        is None:  # fmt: skip
                    await anyio.sleep(0.02)
        assert stored["identity"] == "spiffe://plait.local/ns/default/sa/web"
        notes = saved.document["metadata"]["annotations"]
        assert notes["plait.dev/registered-identity"] == "spiffe://plait.local/ns/default/sa/web"
    # The same data directory, a new process: nobody else may take the node id.
    async with control_plane(tmp_path) as cp:
        impostor = node("web-0", "web", service="web", serviceAccount="payments")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with ads_stream(cp, impostor):
                pass
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "belongs to spiffe://plait.local/ns/default/sa/web" in str(refused.value.details())
        async with ads_stream(cp, web):  # its owner comes back
            pass


async def test_a_node_id_is_free_again_once_its_node_is_gone_for_the_grace_period(
    tmp_path: Path,
) -> None:
    """The node id → identity map holds the nodes the registry knows, not every id ever
    seen: once a node and its Workload are gone, another identity may use the id."""
    mesh = (
        doc("Service", "web", {"ports": [{"port": 8080}]}),
        doc("Sidecar", "web", {"ingress": [{"port": {"number": 18001},
                                            "defaultEndpoint": "127.0.0.1:9"}]}),
    )  # fmt: skip
    async with control_plane(tmp_path, workload_grace=0.3) as cp:
        await apply(cp, *mesh)
        owners = cp.context.extras["node_binding"].owners
        registry: Registry = cp.context.extras["registry"]
        first = node("web-0", "web", service="web", serviceAccount="web")
        async with ads_stream(cp, first):
            await eventually(lambda: (registry.status("default", "web-0") or {}).get("workload"))
            assert owners["web-0"] == "spiffe://plait.local/ns/default/sa/web"
        await eventually(lambda: "web-0" not in owners)
        assert await cp.context.store.get(Key("Workload", "default", "web-0")) is None
        # another service account may now take the id (its stream is served)
        second = node("web-0", "web", service="web", serviceAccount="web2")
        async with ads_stream(cp, second):
            row = await eventually(lambda: registry.status("default", "web-0"))
            assert row["identity"] == "spiffe://plait.local/ns/default/sa/web2"
            assert owners["web-0"] == "spiffe://plait.local/ns/default/sa/web2"
