"""Outbound mTLS through a real sidecar process: identity checked, rotation, plaintext kept.

The sidecar runs as ``tests/support/identity_sidecar.py`` (the real sidecar, its
CertStore filled from files, refilled on SIGUSR1). The upstream is
``tests/support/mtls_server.py`` (Python ``ssl``, client certificate required), which
answers with the SPIFFE ID and serial of the certificate the sidecar presented.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    HERE,
    PY,
    Proc,
    free_port,
    http_get,
    ready_or_stopped,
    running,
    start,
    start_echo,
    wait_port,
    write_config,
)
from tests.support.controlplane import apply, config_dump, start_control_plane
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e

CLIENT = "spiffe://plait.local/ns/default/sa/client"
SERVER = "spiffe://plait.local/ns/default/sa/server"
OTHER = "spiffe://plait.local/ns/default/sa/other"


def identity_dir(tmp: Path, name: str, ca: Authority, spiffe_id: str, bundle: bytes) -> Path:
    where = tmp / name
    where.mkdir(exist_ok=True)
    chain, key = ca.leaf(spiffe_id)
    (where / "chain.pem").write_bytes(chain)
    (where / "key.pem").write_bytes(key)
    (where / "bundle.pem").write_bytes(bundle)
    return where


def serial_of(where: Path) -> str:
    from cryptography import x509

    return str(x509.load_pem_x509_certificate((where / "chain.pem").read_bytes()).serial_number)


def start_mtls_server(tmp: Path, where: Path, *, h2: bool = False) -> Proc:
    port = free_port()
    log = tmp / f"mtls-{port}.log"
    cmd = [PY, str(HERE / "mtls_server.py"), "--port", str(port), "--dir", str(where)]
    p = start(cmd + (["--h2"] if h2 else []), log)
    proc = Proc(p, log, port=port)
    try:
        wait_port(port, proc=p)
    except BaseException:
        proc.stop()
        raise
    return proc


def config(
    upstream_port: int, listen: int, admin: int, access_log: Path, tls: str, protocol: str
) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: upstream}}
spec:
  ports: [{{name: main, port: 80, protocol: {protocol}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: upstream-1}}
spec:
  service: upstream
  serviceAccount: server
  address: 127.0.0.1
  ports: [{{port: 80, targetPort: {upstream_port}}}]
{tls}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  admin: {{port: {admin}}}
  accessLog: {{path: {access_log}}}
  egress:
  - name: out
    port: {{number: {listen}, protocol: http}}
    service: upstream
"""


class Mesh:
    def __init__(self, tmp: Path, procs: list[Proc]) -> None:
        self.tmp = tmp
        self.procs = procs
        self.ca = Authority.create()
        self.client_dir = identity_dir(tmp, "client", self.ca, CLIENT, self.ca.pem)
        self.access_log = tmp / "access.log"

    def sidecar(
        self, upstream_port: int, tls: str = "  tlsMode: mutual", protocol: str = "http"
    ) -> Proc:
        listen, admin = free_port(), free_port()
        return self.run(config(upstream_port, listen, admin, self.access_log, tls, protocol),
                        listen, admin)  # fmt: skip

    def run(self, text: str, listen: int, admin: int) -> Proc:
        """The sidecar with this identity, on the static config ``text``."""
        path = write_config(self.tmp, text, f"plait-{admin}.yaml")
        cmd = [
            PY,
            str(HERE / "identity_sidecar.py"),
            str(self.client_dir),
            "--log-level",
            "info",
            "sidecar",
            "--config",
            str(path),
        ]
        log = self.tmp / f"sidecar-{admin}.log"
        proc = Proc(start(cmd, log), log, port=listen, admin_port=admin, config=path)
        self.procs.append(proc)
        ready_or_stopped(proc)
        return proc

    def upstream(
        self, spiffe_id: str = SERVER, ca: Authority | None = None, *, h2: bool = False
    ) -> Proc:
        ca = ca or self.ca
        where = identity_dir(self.tmp, f"server-{free_port()}", ca, spiffe_id, self.ca.pem)
        proc = start_mtls_server(self.tmp, where, h2=h2)
        self.procs.append(proc)
        return proc

    def access(self) -> list[dict[str, object]]:
        """The access log's lines, once there is one (it is written after the response)."""
        deadline = time.monotonic() + 5
        lines: list[str] = []
        while time.monotonic() < deadline and not lines:
            if self.access_log.exists():
                lines = self.access_log.read_text().splitlines()
            time.sleep(0.05)
        return [json.loads(line) for line in lines]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    procs: list[Proc] = []
    with running(*procs):
        m = Mesh(tmp_path, procs)
        yield m
        for p in procs:
            p.stop(signal.SIGKILL)


def metrics(admin: int) -> str:
    return http_get(admin, "/metrics")[2].decode()


def test_the_upstream_sees_the_sidecars_spiffe_id(mesh: Mesh) -> None:
    up = mesh.upstream()
    sidecar = mesh.sidecar(up.port)
    status, _, body = http_get(sidecar.port, "/")
    assert status == 200, body
    assert json.loads(body) == {
        "peer": CLIENT, "serial": serial_of(mesh.client_dir), "alpn": "http/1.1"
    }  # fmt: skip
    text = metrics(sidecar.admin_port)
    assert (
        'plait_upstream_events_total{cluster="upstream.default:80",event="tls_handshakes_ok"} 1'
        in text
    )


def test_an_upstream_with_an_unexpected_spiffe_id_is_refused(mesh: Mesh) -> None:
    impostor = mesh.upstream(OTHER)  # same CA, valid chain, wrong identity
    sidecar = mesh.sidecar(impostor.port)
    status, headers, _ = http_get(sidecar.port, "/")
    assert status == 503
    assert headers["x-plait-reason"] == "tls: unexpected peer identity"
    assert mesh.access()[-1]["failure_reason"] == "tls: unexpected peer identity"
    text = metrics(sidecar.admin_port)
    assert 'reason="tls: unexpected peer identity"' in text
    assert 'event="tls_peer_identity_mismatches"' in text
    assert OTHER in sidecar.logs() and SERVER in sidecar.logs()  # the IDs, for the operator


def test_an_upstream_certificate_from_another_ca_is_refused(mesh: Mesh) -> None:
    rogue = mesh.upstream(SERVER, ca=Authority.create("rogue"))  # the right SAN, wrong root
    sidecar = mesh.sidecar(rogue.port)
    status, headers, _ = http_get(sidecar.port, "/")
    assert status == 503
    assert headers["x-plait-reason"] == "tls: handshake failed"
    assert 'event="tls_handshake_failures"' in metrics(sidecar.admin_port)
    assert "certificate verify failed" in sidecar.logs()


def test_after_a_rotation_new_connections_present_the_new_certificate(mesh: Mesh) -> None:
    up = mesh.upstream()
    sidecar = mesh.sidecar(up.port)
    old = serial_of(mesh.client_dir)
    client = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)

    def get(path: str = "/") -> str:
        client.request("GET", path)
        r = client.getresponse()
        assert r.status == 200
        return str(json.loads(r.read())["serial"])

    assert get() == old
    identity_dir(mesh.tmp, "client", mesh.ca, CLIENT, mesh.ca.pem)  # a new leaf in place
    new = serial_of(mesh.client_dir)
    assert new != old
    sidecar.popen.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert get() == old  # the pooled upstream connection keeps working
    assert get("/close") == old  # ... until the upstream closes it
    assert get() == new  # the next handshake presents the new leaf
    client.close()


def test_a_plaintext_endpoint_still_works(mesh: Mesh) -> None:
    echo = start_echo(mesh.tmp)
    mesh.procs.append(echo)
    sidecar = mesh.sidecar(echo.port, tls="")  # a Workload without tlsMode: mutual
    status, headers, _ = http_get(sidecar.port, "/")
    assert status == 200
    assert headers["x-served-by"] == "echo"


def test_an_http2_cluster_negotiates_h2_by_alpn(mesh: Mesh) -> None:
    up = mesh.upstream(h2=True)  # an HTTP/2-only mTLS server
    sidecar = mesh.sidecar(up.port, protocol="http2")
    for _ in range(3):  # one connection, multiplexed
        status, _, body = http_get(sidecar.port, "/")
        assert status == 200, body
        assert json.loads(body) == {
            "peer": CLIENT, "serial": serial_of(mesh.client_dir), "alpn": "h2"
        }  # fmt: skip
    text = metrics(sidecar.admin_port)
    assert 'cluster="upstream.default:80",event="tls_handshakes_ok"} 1' in text


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
    cmd = [PY, str(HERE / "identity_sidecar.py"), str(mesh.client_dir), "--log-level", "info",
           "sidecar", "--control-plane", f"127.0.0.1:{cp.extra['xds']}", "--sidecar", "client",
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
