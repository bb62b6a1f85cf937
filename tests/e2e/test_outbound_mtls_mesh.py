"""Outbound mTLS in a mesh: config over xDS, and retries / outlier detection around a
server with the wrong identity. See ``_mtls.py`` for the helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import PY, Proc, free_port, http_get, ready_or_stopped, start
from tests.support.controlplane import apply, config_dump, start_control_plane

from ._mtls import CLIENT, OTHER, SERVER, Mesh, identity_args, metrics

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(tmp_path: Path, procs: list[Proc]) -> Mesh:
    return Mesh(tmp_path, procs)


def test_control_plane_mode_carries_each_endpoints_identity(mesh: Mesh) -> None:
    """Config over xDS: the same checks as static YAML (the IDs travel in EDS metadata)."""
    cp = start_control_plane(mesh.tmp)
    mesh.procs.append(cp)
    good, impostor = mesh.upstream(), mesh.upstream(OTHER)
    ok_port, bad_port, admin = free_port(), free_port(), free_port()
    apply(cp, mesh.tmp, f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: good}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: bad}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: good-1}}
spec:
  service: good
  serviceAccount: server
  address: 127.0.0.1
  tlsMode: mutual
  ports: [{{port: 80, targetPort: {good.port}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: bad-1}}
spec:
  service: bad
  serviceAccount: server
  address: 127.0.0.1
  tlsMode: mutual
  ports: [{{port: 80, targetPort: {impostor.port}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - {{name: good, port: {{number: {ok_port}, protocol: http}}, service: good}}
  - {{name: bad, port: {{number: {bad_port}, protocol: http}}, service: bad}}
""")  # fmt: skip
    cmd = [PY, "-m", "plait.core.ops.cli", "--log-level", "info",
           "sidecar", *identity_args(mesh.client_dir),
           # its identity is the test PKI's, not the control plane's CA: the plaintext port
           "--xds-plaintext", "--control-plane", f"127.0.0.1:{cp.extra['xds_plaintext']}",
           "--sidecar", "client",
           "--node-id", "client-1", "--admin-port", str(admin),
           "--state-dir", str(mesh.tmp / "sidecar-state")]  # fmt: skip
    log = mesh.tmp / "sidecar-xds.log"
    sidecar = Proc(start(cmd, log), log, admin_port=admin)
    mesh.procs.append(sidecar)
    ready_or_stopped(sidecar, timeout=20)
    endpoint = config_dump(sidecar)["config"]["clusters"]["good.default:80"]["endpoints"][0]
    assert (endpoint["identity"], endpoint["mtls"]) == (SERVER, True)
    status, _, body = http_get(ok_port, "/")
    assert status == 200, body
    assert json.loads(body)["peer"] == CLIENT
    status, headers, _ = http_get(bad_port, "/")
    assert (status, headers["x-plait-reason"]) == (503, "tls: unexpected peer identity")


def test_retries_and_outlier_detection_route_around_an_impostor(mesh: Mesh) -> None:
    """A refused identity is a connect failure: retried elsewhere, and the endpoint ejected."""
    good, impostor = mesh.upstream(), mesh.upstream(OTHER)
    listen, admin = free_port(), free_port()
    workloads = "".join(f"""\
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: upstream-{i}}}
spec:
  service: upstream
  serviceAccount: server
  address: 127.0.0.1
  tlsMode: mutual
  ports: [{{port: 80, targetPort: {port}}}]
""" for i, port in enumerate((good.port, impostor.port)))  # fmt: skip
    sidecar = mesh.run(f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: upstream}}
spec: {{ports: [{{port: 80}}]}}
{workloads}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: upstream}}
spec:
  parentRefs: [{{name: upstream, port: 80}}]
  rules:
  - backendRefs: [{{name: upstream, port: 80}}]
    retry: {{attempts: 2, backoff: 1ms}}
---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: upstream}}
spec:
  targetRefs: [{{name: upstream}}]
  retryConstraint: {{budget: {{percent: 100, interval: 10s}}}}
  outlierDetection: {{consecutive5xx: 1, baseEjectionTime: 60s}}
  loadBalancer: {{type: RoundRobin}}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  admin: {{port: {admin}}}
  egress:
  - {{name: out, port: {{number: {listen}, protocol: http}}, service: upstream}}
""", listen, admin)  # fmt: skip
    peers = []
    for _ in range(20):
        status, _, body = http_get(sidecar.port, "/")
        assert status == 200, body
        peers.append(json.loads(body)["peer"])
    assert set(peers) == {CLIENT}
    events = {
        line.split('event="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics(admin).splitlines()
        if line.startswith("plait_upstream_events_total{")
    }
    assert events["retry"] >= 1
    assert events["ejection"] == 1
    assert events["tls_peer_identity_mismatches"] == 1  # ejected: never tried again
