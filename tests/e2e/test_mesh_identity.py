"""The mesh end to end in control-plane mode: sidecars with join tokens register Workloads
that take mesh mTLS, and the client's hop to the server is mutually authenticated, in the
control plane's trust domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import Proc, http_get, start_echo
from tests.support.controlplane import config_dump, plait, wait_for
from tests.support.mtls import metric

from ._ca_mesh import access_lines, ca_mesh

pytestmark = pytest.mark.e2e


def test_join_token_sidecars_talk_mtls_in_the_control_planes_trust_domain(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "server-app")
    procs.append(app)
    mesh = ca_mesh(tmp_path, procs, app.port, trust_domain="mesh.example")

    # the registered Workload says its sidecar terminates mesh mTLS
    out = plait(mesh.cp, "get", "workloads", "-o", "json").stdout
    docs = json.loads(out)
    items = docs.get("items", [docs])  # one object when there is one
    assert [d["spec"].get("tlsMode") for d in items] == ["mutual"], out

    # the client expects the server's identity in the CA's trust domain
    def endpoint() -> dict[str, object]:
        clusters = config_dump(mesh.client)["config"]["clusters"]
        return dict(clusters["server.default:8080"]["endpoints"][0])

    wait_for(endpoint, timeout=15)
    assert (endpoint()["identity"], endpoint()["mtls"]) == (mesh.spiffe("server"), True)

    wait_for(lambda: http_get(mesh.egress, "/hello")[0] == 200, timeout=15)
    status, headers, body = http_get(mesh.egress, "/hello", headers={"Host": "server.example"})
    assert status == 200
    assert headers["x-served-by"] == "server-app"  # the server's app saw the request
    echo = json.loads(body)
    assert echo["path"] == "/hello"
    assert echo["headers"]["host"] == "server.example"  # as the client sent it

    # the server sidecar accepted it over mTLS only (STRICT), and knows who called
    assert metric(mesh.server.admin_port, "plait_inbound_connections_total",
                  listener="in", transport="mtls") >= 1  # fmt: skip
    assert metric(mesh.server.admin_port, "plait_inbound_connections_total",
                  listener="in", transport="plaintext") == 0  # fmt: skip
    wait_for(lambda: any(e.get("path") == "/hello" for e in access_lines(mesh.access_log)))
    line = next(e for e in access_lines(mesh.access_log) if e.get("path") == "/hello")
    assert line["peer_identity"] == mesh.spiffe("client")
    # the client's HTTP/1.1 request crossed the sidecars' hop as HTTP/2 (ALPN h2)
    assert (line["protocol"], line["alpn"]) == ("HTTP/2", "h2")
    # and the client sidecar's handshakes were mTLS, checked against the server's identity
    assert metric(mesh.client.admin_port, "plait_upstream_events_total",
                  cluster="server.default:8080", event="tls_handshakes_ok") >= 1  # fmt: skip


def test_an_h2_upgrade_policy_keeps_http1_between_the_sidecars(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "server-app")
    procs.append(app)
    policy = """---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: keep-h1}
spec:
  targetRefs: [{kind: Service, name: server}]
  h2UpgradePolicy: DO_NOT_UPGRADE
"""
    mesh = ca_mesh(tmp_path, procs, app.port, extra=policy)
    wait_for(lambda: http_get(mesh.egress, "/kept")[0] == 200, timeout=15)
    line = _served(mesh.access_log, "/kept")
    assert (line["protocol"], line["alpn"]) == ("HTTP/1.1", "http/1.1")
    assert line["peer_identity"] == mesh.spiffe("client")


def test_certs_admin_and_metrics_show_the_cas_certificate(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "server-app")
    procs.append(app)
    mesh = ca_mesh(tmp_path, procs, app.port, trust_domain="mesh.example")
    status, headers, body = http_get(mesh.server.admin_port, "/certs")
    assert (status, headers["content-type"]) == (200, "application/json")
    certs = json.loads(body)
    assert (certs["source"], certs["generation"]) == ("agent", 1)
    leaf = certs["leaf"]
    assert leaf["spiffe_id"] == mesh.spiffe("server")
    assert 3000 < leaf["seconds_left"] <= 3600  # the control plane's default TTL, 1 h
    assert certs["chain"][0]["serial"] == leaf["serial"]
    assert certs["chain"][1]["is_ca"] and not certs["chain"][0]["is_ca"]
    assert certs["next_renewal"] is not None and certs["last_error"] is None
    # the bundle's roots are the CA's, by fingerprint
    ca = json.loads(plait(mesh.cp, "ca", "status", "-o", "json").stdout)
    assert [r["sha256"] for r in certs["trust_bundle"]] == [r["fingerprint"] for r in ca["roots"]]
    assert certs["renewals"] == {"ok": 1, "error": 0}

    admin = mesh.server.admin_port
    assert 3000 < metric(admin, "plait_cert_expiry_seconds") <= 3600
    assert metric(admin, "plait_cert_generation") == 1
    assert metric(admin, "plait_cert_renewals_total", result="ok") == 1
    assert metric(admin, "plait_cert_renewals_total", result="error") == 0


def _served(mesh_log: Path, path: str) -> dict[str, object]:
    wait_for(lambda: any(e.get("path") == path for e in access_lines(mesh_log)))
    return next(e for e in access_lines(mesh_log) if e.get("path") == path)


def test_grpc_unary_and_streaming_over_h2_between_mtls_sidecars(
    tmp_path: Path, procs: list[Proc]
) -> None:
    import grpc

    from .test_protocols import _grpc_server

    mesh = ca_mesh(tmp_path, procs, _grpc_server(tmp_path, procs), protocol="grpc")
    with grpc.insecure_channel(f"127.0.0.1:{mesh.egress}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        assert unary(b"hi", timeout=15, wait_for_ready=True).startswith(b"echo:hi")
        stream = channel.unary_stream("/test.Echo/Stream")
        assert list(stream(b"5", timeout=15)) == [b"item-%d" % i for i in range(5)]
    for path in ("/test.Echo/Unary", "/test.Echo/Stream"):
        line = _served(mesh.access_log, path)
        # the sidecars' hop: HTTP/2 negotiated by ALPN, from the client's verified identity
        assert (line["protocol"], line["alpn"]) == ("HTTP/2", "h2")
        assert line["peer_identity"] == mesh.spiffe("client")
    assert metric(mesh.server.admin_port, "plait_inbound_connections_total",
                  listener="in", transport="mtls") >= 1  # fmt: skip


def test_websocket_between_mtls_sidecars(tmp_path: Path, procs: list[Proc]) -> None:
    from websockets.sync.client import connect

    from tests.support import PY, free_port, start, wait_port

    from .test_protocols import WS_SERVER

    up = free_port()
    script = tmp_path / "ws_server.py"
    script.write_text(WS_SERVER)
    server = start([PY, str(script), str(up)], tmp_path / "ws.log")
    procs.append(Proc(server, tmp_path / "ws.log"))
    wait_port(up, proc=server)
    mesh = ca_mesh(tmp_path, procs, up)
    wait_for(lambda: http_get(mesh.egress, "/warm")[0] < 500, timeout=15)
    with connect(f"ws://127.0.0.1:{mesh.egress}/chat", open_timeout=10) as ws:
        for msg in ["hello", "x" * 100_000]:
            ws.send(msg)
            assert ws.recv(timeout=10) == msg
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"
    line = _served(mesh.access_log, "/chat")
    assert (line["status"], line["protocol"], line["alpn"]) == (101, "HTTP/1.1", "http/1.1")
    assert line["peer_identity"] == mesh.spiffe("client")
    assert metric(mesh.server.admin_port, "plait_inbound_connections_total",
                  listener="in", transport="plaintext") == 0  # fmt: skip
