"""The mesh labels of the request metrics, read from real sidecars' ``/metrics``.

Two sidecars with identities from a real control plane's CA (``_ca_mesh.py``): the
client's egress reaches the server's STRICT ingress over mTLS. The test parses each
sidecar's ``/metrics`` with prometheus-client's parser and checks every label of the
request series against what it knows: who called (the verified SPIFFE IDs), which
Service, which direction, the status, the gRPC status.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Proc, http_get, start_echo
from tests.support.controlplane import wait_for

from ._ca_mesh import CaMesh, ca_mesh

pytestmark = pytest.mark.e2e


def _series(admin: int, name: str = "plait_requests_total") -> list[tuple[dict[str, str], float]]:
    _, _, body = http_get(admin, "/metrics")
    return [
        (dict(s.labels), s.value)
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
        if s.name == name
    ]


def _expected(mesh: CaMesh) -> tuple[dict[str, str], dict[str, str]]:
    """The mesh labels of the client's (outbound) and the server's (inbound) series."""
    client, server = mesh.spiffe("client"), mesh.spiffe("server")
    outbound = {
        "listener": "out", "direction": "outbound", "reporter": "source",
        "source_workload": "client", "source_workload_namespace": "default",
        "source_principal": client,
        "destination_workload": "server", "destination_workload_namespace": "default",
        "destination_principal": server,
        "destination_service": "server", "destination_service_namespace": "default",
        "destination_version": "unknown",
    }  # fmt: skip
    inbound = {
        "listener": "in", "direction": "inbound", "reporter": "destination",
        "source_workload": "unknown", "source_workload_namespace": "default",
        "source_principal": client,
        "destination_workload": "server", "destination_workload_namespace": "default",
        "destination_principal": server,
        "destination_service": "server", "destination_service_namespace": "default",
        "destination_version": "unknown",
    }  # fmt: skip
    return outbound, inbound


def test_http_requests_carry_the_verified_identities_of_both_sides(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "server-app")
    procs.append(app)
    mesh = ca_mesh(tmp_path, procs, app.port)
    wait_for(lambda: http_get(mesh.egress, "/warm")[0] == 200, timeout=15)
    for i in range(5):
        assert http_get(mesh.egress, f"/item/{i}?q={i}")[0] == 200
    outbound, inbound = _expected(mesh)
    for admin, mesh_labels in ((mesh.client.admin_port, outbound),
                               (mesh.server.admin_port, inbound)):  # fmt: skip
        ok = {**mesh_labels, "code": "200", "grpc_response_status": "", "reason": ""}
        # one series: the warm-up and the five requests, whatever their paths
        assert _series(admin) == [(ok, 6.0)]
        durations = _series(admin, "plait_request_duration_seconds_count")
        assert durations == [(ok, 6.0)]


def test_grpc_status_of_trailers_and_of_a_trailers_only_answer(
    tmp_path: Path, procs: list[Proc]
) -> None:
    import grpc

    from .test_protocols import _grpc_server

    mesh = ca_mesh(tmp_path, procs, _grpc_server(tmp_path, procs), protocol="grpc")
    with grpc.insecure_channel(f"127.0.0.1:{mesh.egress}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        for _ in range(3):
            assert unary(b"hi", timeout=15, wait_for_ready=True).startswith(b"echo:hi")
        missing = channel.unary_unary("/test.Echo/Missing")
        with pytest.raises(grpc.RpcError) as failed:
            missing(b"", timeout=15)
        assert failed.value.code() is grpc.StatusCode.UNIMPLEMENTED
    outbound, inbound = _expected(mesh)
    for admin, mesh_labels in ((mesh.client.admin_port, outbound),
                               (mesh.server.admin_port, inbound)):  # fmt: skip
        counts = {
            (labels["code"], labels["grpc_response_status"]): n
            for labels, n in _series(admin)
            if all(labels[k] == v for k, v in mesh_labels.items())
        }
        assert counts == {("200", "0"): 3, ("200", "12"): 1}
