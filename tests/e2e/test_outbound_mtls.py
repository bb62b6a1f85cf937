"""Outbound mTLS through a real sidecar process: identity checked, rotation, plaintext kept.

See ``_mtls.py`` for the sidecar with an identity and the mTLS upstream.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path

import pytest

from tests.support import Proc, free_port, http_get, start_echo
from tests.support.otlp_receiver import otlp_receiver
from tests.support.pki import Authority

from ._mtls import CLIENT, OTHER, SERVER, Mesh, config, identity_dir, metrics, serial_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(tmp_path: Path, procs: list[Proc]) -> Mesh:
    return Mesh(tmp_path, procs)


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
    line = mesh.access()[-1]  # both ends by their verified identities
    assert (line["source_identity"], line["destination_identity"]) == (CLIENT, SERVER), line


def test_the_client_span_names_both_verified_identities(mesh: Mesh) -> None:
    """A Telemetry (static config) traces every request; the CLIENT span carries this
    sidecar's SPIFFE ID and the upstream server's, as the handshake verified it."""
    up = mesh.upstream()
    listen, admin = free_port(), free_port()
    with otlp_receiver() as receiver:
        telemetry = f"""---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: plait-system}}
spec:
  extensionProviders: [{{name: otel, opentelemetry: {{endpoint: "{receiver.endpoint}"}}}}]
  tracing: [{{providers: [{{name: otel}}], randomSamplingPercentage: 100}}]
"""
        text = config(up.port, listen, admin, mesh.access_log, "  tlsMode: mutual", "http")
        sidecar = mesh.run(text + telemetry, listen, admin)
        assert http_get(sidecar.port, "/")[0] == 200
        (span,) = receiver.wait(1)
    assert span.kind == "client"
    assert span.attributes["plait.source.identity"] == CLIENT
    assert span.attributes["plait.destination.identity"] == SERVER
    assert mesh.access()[-1]["trace_id"] == span.trace_id


def test_an_upstream_with_an_unexpected_spiffe_id_is_refused(mesh: Mesh) -> None:
    impostor = mesh.upstream(OTHER)  # same CA, valid chain, wrong identity
    sidecar = mesh.sidecar(impostor.port)
    status, headers, _ = http_get(sidecar.port, "/")
    assert status == 503
    assert headers["x-plait-reason"] == "tls: unexpected peer identity"
    assert mesh.access()[-1]["failure_reason"] == "tls: unexpected peer identity"
    assert mesh.access()[-1]["destination_identity"] is None  # never verified: no identity
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
    sidecar.popen.send_signal(signal.SIGHUP)
    # once the new leaf is in, the pooled upstream connection (made with the old one) takes
    # no new request: the next one goes on a new handshake, which presents the new leaf
    deadline = time.monotonic() + 10
    while (got := get()) == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == new
    assert get() == new  # and the new connection is pooled in turn
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
