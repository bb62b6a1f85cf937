"""The xDS ports from outside, with grpcio as the client: who may connect, and as which node.

A real ``plait control-plane`` process; certificates from its CA through its API (join token
and CSR, as a sidecar gets them) or from another CA made here. The TLS port requires a client
certificate from the control plane's CA and serves a node only when the certificate's
identity may be that node; every refusal is counted in ``plait ca status``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # type: ignore[import-untyped]
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # type: ignore[import-untyped]
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]

from plait.core.xds.wire import CLUSTER, SDS_ROOTS, SECRET
from tests.support import Proc
from tests.support.ca import key_pem, make_csr
from tests.support.controlplane import api_context, ca_bundle, plait, start_control_plane
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e

Pair = tuple[bytes, bytes]  # (key PEM, chain PEM)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("node-auth")
    proc = start_control_plane(tmp)
    yield proc
    proc.stop()


def _leaf(cp: Proc, namespace: str, account: str) -> Pair:
    """A certificate from the control plane's CA, got the way a sidecar gets its first one."""
    token = plait(cp, "workload", "token", "-n", namespace, "-s", account).stdout.strip()
    key, csr = make_csr()
    conn = http.client.HTTPSConnection("127.0.0.1", cp.extra["api"], timeout=10,
                                       context=api_context(cp))  # fmt: skip
    try:
        body = json.dumps({"csr": csr, "token": token})
        conn.request("POST", "/api/v1/certificates", body=body,
                     headers={"content-type": "application/json"})  # fmt: skip
        r = conn.getresponse()
        answer = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 200, answer
    return key_pem(key), str(answer["chain"]).encode()


def _node(node_id: str, namespace: str, sidecar: str = "web", account: str | None = None,
          identity: str | None = None) -> Any:  # fmt: skip
    plait_meta: dict[str, Any] = {"sidecar": sidecar, "namespace": namespace}
    if account is not None:
        plait_meta["workload"] = {"service": "web", "serviceAccount": account}
        if identity is not None:
            plait_meta["workload"]["identity"] = identity
    meta = struct_pb2.Struct()
    json_format.ParseDict({"plait": plait_meta}, meta)
    return base_pb2.Node(id=node_id, metadata=meta)


def _ask(
    target: str, creds: grpc.ChannelCredentials | None, node: Any, type_url: str = CLUSTER,
    names: tuple[str, ...] = (),
) -> tuple[grpc.StatusCode, Any]:  # fmt: skip
    """One request on a fresh connection: ``(OK, the first response)`` or the error."""
    channel = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, node=node, resource_names=names)
        try:
            responses = stub.StreamAggregatedResources(iter([req]), timeout=5)
            return grpc.StatusCode.OK, next(iter(responses))
        except grpc.RpcError as exc:
            return exc.code(), exc.details()


def _tls(cp: Proc, pair: Pair | None) -> grpc.ChannelCredentials:
    key, chain = pair if pair is not None else (None, None)
    return grpc.ssl_channel_credentials(
        ca_bundle(cp).read_bytes(), private_key=key, certificate_chain=chain
    )


def _xds(cp: Proc) -> str:
    return f"127.0.0.1:{cp.extra['xds']}"


def _refusals(cp: Proc) -> dict[str, int]:
    status = json.loads(plait(cp, "ca", "status", "-o", "json").stdout)
    return dict(status.get("refusals") or {})


def test_a_sidecar_certificate_gets_its_config_and_the_bundle_over_mutual_tls(cp: Proc) -> None:
    web = _tls(cp, _leaf(cp, "default", "web"))
    code, response = _ask(_xds(cp), web, _node("web-1", "default", account="web"))
    assert code == grpc.StatusCode.OK, response
    assert response.type_url == CLUSTER
    code, response = _ask(_xds(cp), web, _node("web-1", "default", account="web"), SECRET,
                          (SDS_ROOTS,))  # fmt: skip
    assert code == grpc.StatusCode.OK, response
    secret = secret_pb2.Secret()
    assert response.resources[0].Unpack(secret) and secret.name == SDS_ROOTS
    assert secret.validation_context.trusted_ca.inline_bytes == ca_bundle(cp).read_bytes()
    # An own identity's leaf is never handed out over SDS (it comes from the CA's API).
    code, response = _ask(_xds(cp), web, _node("web-1", "default", account="web"), SECRET,
                          ("default",))  # fmt: skip
    assert code == grpc.StatusCode.OK and list(response.resources) == []


def test_the_tls_port_refuses_a_client_without_a_certificate(cp: Proc) -> None:
    code, _ = _ask(_xds(cp), _tls(cp, None), _node("anon", "default"))
    assert code == grpc.StatusCode.UNAVAILABLE  # the handshake fails: nothing is served


def test_the_tls_port_refuses_a_certificate_from_another_ca(cp: Proc) -> None:
    other = Authority.create("another mesh")
    chain, key = other.leaf("spiffe://plait.local/ns/default/sa/web")
    code, _ = _ask(_xds(cp), _tls(cp, (key, chain)), _node("web-x", "default", account="web"))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_for_one_workload_cannot_be_another_node(cp: Proc) -> None:
    before = _refusals(cp)
    web = _tls(cp, _leaf(cp, "default", "web"))
    # another namespace's config
    code, why = _ask(_xds(cp), web, _node("shop-1", "shop"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://plait.local/ns/default/sa/web" in why and "not of shop" in why
    # a Workload of another service account, in its own namespace
    code, why = _ask(_xds(cp), web, _node("pay-1", "default", account="payments"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "payments" in why
    after = _refusals(cp)
    assert after.get("xds_namespace_mismatch", 0) == before.get("xds_namespace_mismatch", 0) + 1
    assert after.get("xds_service_account_mismatch", 0) == \
        before.get("xds_service_account_mismatch", 0) + 1  # fmt: skip
    log = cp.log.read_text()
    assert "node shop-1 refused" in log and "node pay-1 refused" in log


def test_a_node_id_belongs_to_the_identity_that_used_it_first(cp: Proc) -> None:
    web = _tls(cp, _leaf(cp, "default", "web"))
    cart = _tls(cp, _leaf(cp, "default", "cart"))
    assert _ask(_xds(cp), web, _node("owned-1", "default", account="web"))[0] == grpc.StatusCode.OK
    before = _refusals(cp).get("xds_node_taken", 0)
    code, why = _ask(_xds(cp), cart, _node("owned-1", "default", account="cart"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "belongs to" in why
    assert _refusals(cp).get("xds_node_taken", 0) == before + 1
    # the owner itself comes back with a new certificate (a renewal) and is served
    again = _tls(cp, _leaf(cp, "default", "web"))
    assert _ask(_xds(cp), again, _node("owned-1", "default", account="web"))[0] == \
        grpc.StatusCode.OK  # fmt: skip
    # and nobody takes it over on the plaintext port
    plain = f"127.0.0.1:{cp.extra['xds_plaintext']}"
    code, why = _ask(plain, None, _node("owned-1", "default"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "belongs to" in why


def test_the_plaintext_port_serves_only_nodes_that_claim_no_identity(cp: Proc) -> None:
    plain = f"127.0.0.1:{cp.extra['xds_plaintext']}"
    code, _ = _ask(plain, None, _node("plain-1", "default", account="web"))
    assert code == grpc.StatusCode.OK
    code, why = _ask(plain, None, _node("plain-2", "default", account="web", identity="agent"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "TLS xDS port" in why
    assert _refusals(cp).get("xds_plaintext_identity", 0) >= 1


def test_during_a_root_rotation_leaves_of_both_roots_are_accepted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cp = start_control_plane(tmp_path_factory.mktemp("rotation"))
    try:
        old = _leaf(cp, "default", "web")
        status = json.loads(plait(cp, "ca", "rotate", "-o", "json").stdout)
        assert [r["role"] for r in status["roots"]] == ["current", "previous"]
        new = _leaf(cp, "default", "web")
        assert new[1] != old[1]
        # The port takes the new bundle within a second (with its renewed certificate).
        deadline = time.monotonic() + 10
        while True:
            results = [
                _ask(_xds(cp), _tls(cp, pair), _node(f"web-{i}", "default", account="web"))[0]
                for i, pair in enumerate((old, new))
            ]
            if results == [grpc.StatusCode.OK] * 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert results == [grpc.StatusCode.OK, grpc.StatusCode.OK]
    finally:
        cp.stop()


def test_an_xds_connection_ends_after_its_maximum_age(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A stream does not outlive its connection's maximum age: the server says GOAWAY and,
    after the grace, ends the stream, so the client reconnects with its current
    certificate (which is checked again)."""
    proc = start_control_plane(tmp_path_factory.mktemp("max-age"),
                               extra=("--xds-max-connection-age", "1"))  # fmt: skip
    done = threading.Event()
    try:
        creds = _tls(proc, _leaf(proc, "default", "web"))
        node = _node("web-aged", "default", account="web")

        def requests() -> Iterator[Any]:  # one request, then the stream stays open
            yield discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=node)
            done.wait(30)

        with grpc.secure_channel(_xds(proc), creds) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            started = time.monotonic()
            responses = stub.StreamAggregatedResources(requests(), timeout=30)
            assert next(responses).type_url == CLUSTER
            with pytest.raises(grpc.RpcError) as ended:
                next(responses)
            lived = time.monotonic() - started
        # 1 s (±10 %) of age, then at most 1 s of grace; well before the call's own 30 s
        assert lived < 10, lived
        assert ended.value.code() is not grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        done.set()
        proc.stop()
