"""A tcp relay to a mesh endpoint originates mTLS: the server's SPIFFE ID is checked
before a byte goes out, and two sidecars relay tcp over mTLS with authorization between.

See ``_mtls.py`` for the sidecar with an identity and the mTLS upstream.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.support import Proc, free_port, start_echo, start_sidecar, write_config
from tests.support.mtls import mesh as web_mesh
from tests.support.mtls import metric, peer_auth

from ._mtls import CLIENT, OTHER, SERVER, Mesh, config, identity_args, identity_dir, serial_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(tmp_path: Path, procs: list[Proc]) -> Mesh:
    return Mesh(tmp_path, procs)


def tcp_sidecar(mesh: Mesh, upstream_port: int) -> Proc:
    """A sidecar whose egress listener relays tcp to the ``upstream`` Service (mTLS)."""
    listen, admin = free_port(), free_port()
    text = config(upstream_port, listen, admin, mesh.access_log, "  tlsMode: mutual", "tcp")
    text = text.replace(f"number: {listen}, protocol: http", f"number: {listen}, protocol: tcp")
    return mesh.run(text, listen, admin)


def relay(port: int, request: bytes) -> bytes:
    """Send ``request`` in plaintext to a tcp listener; everything that comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


GET = b"GET /via-tcp HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n"


def events(sidecar: Proc, event: str) -> float:
    return metric(sidecar.admin_port, "plait_upstream_events_total",
                  cluster="upstream.default:80", event=event)  # fmt: skip


def test_the_upstream_sees_the_sidecars_identity_over_a_tcp_relay(mesh: Mesh) -> None:
    up = mesh.upstream()
    sidecar = tcp_sidecar(mesh, up.port)
    got = relay(sidecar.port, GET)
    assert got.startswith(b"HTTP/1.1 200"), got
    body = json.loads(got.partition(b"\r\n\r\n")[2])
    # the relay presented the sidecar's certificate and offered no ALPN (tcp is not HTTP)
    assert body == {"peer": CLIENT, "serial": serial_of(mesh.client_dir), "alpn": None}
    assert events(sidecar, "tls_handshakes_ok") == 1


def test_a_tcp_relay_to_an_impostor_sends_nothing(mesh: Mesh) -> None:
    impostor = mesh.upstream(OTHER)  # same CA, valid chain, wrong identity
    sidecar = tcp_sidecar(mesh, impostor.port)
    assert relay(sidecar.port, GET) == b""  # closed: no byte of the request went out
    assert events(sidecar, "tls_peer_identity_mismatches") == 1
    assert OTHER in sidecar.logs() and SERVER in sidecar.logs()


ALLOW_CLIENT = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["plait.local/ns/default/sa/client"]}}]}]
"""


def test_two_sidecars_relay_tcp_over_mtls_and_authorize_by_identity(
    mesh: Mesh, tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "db-app")
    procs.append(app)

    def server_sidecar(policy: str) -> Proc:
        port, admin = free_port(), free_port()
        where = identity_dir(tmp_path, f"server-{port}", mesh.ca, SERVER, mesh.ca.pem)
        text = web_mesh(app.port, port, admin, peer_auth("STRICT") + policy, protocol="tcp")
        proc = start_sidecar(write_config(tmp_path, text, f"server-{port}.yaml"), admin,
                             *identity_args(where))  # fmt: skip
        proc.port = port
        procs.append(proc)
        return proc

    allowed = server_sidecar(ALLOW_CLIENT)
    client = tcp_sidecar(mesh, allowed.port)
    got = relay(client.port, GET)
    assert got.startswith(b"HTTP/1.1 200") and b'"path": "/via-tcp"' in got, got
    assert metric(allowed.admin_port, "plait_inbound_connections_total",
                  listener="in", transport="mtls") == 1  # fmt: skip

    # the same client against a server that allows only another principal: closed
    refusing = server_sidecar(ALLOW_CLIENT.replace("sa/client", "sa/someone-else"))
    other_client = tcp_sidecar(mesh, refusing.port)
    assert relay(other_client.port, GET) == b""
    assert metric(refusing.admin_port, "plait_authz_denied_connections_total",
                  policy="no-allow-match") == 1  # fmt: skip
