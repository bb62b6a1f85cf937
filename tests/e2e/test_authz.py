"""AuthorizationPolicy on a real sidecar: decisions by the caller's verified SPIFFE ID."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import PY, Proc, free_port, http_get, write_config
from tests.support.mtls import (
    CLIENT,
    TD,
    Pki,
    client_context,
    metric,
    mtls_get,
    peer_auth,
    start_web,
)
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, Authority.create("mesh root"))


OTHER = f"spiffe://{TD}/ns/default/sa/other"

POLICIES = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["plait.local/ns/default/sa/client"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-reports, namespace: default}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/reports/*"], methods: [GET]}}]
"""


def test_allow_deny_and_audit_by_principal(tmp_path: Path, pki: Pki, procs: list[Proc]) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("PERMISSIVE") + POLICIES)
    client = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    other = client_context(pki, *pki.files("other", *pki.root.leaf(OTHER)))

    status, _, body = mtls_get(port, client, "/orders")
    assert status == 200 and b'"path": "/orders"' in body

    status, headers, _ = mtls_get(port, other, "/orders")
    assert status == 403
    assert headers["x-plait-denied"] == "no-allow-match"

    status, _, _ = http_get(port, "/orders")  # plaintext: no principal, no ALLOW matches
    assert status == 403

    status, headers, _ = mtls_get(port, client, "/admin/users")  # DENY overrides ALLOW
    assert status == 403
    assert headers["x-plait-denied"] == "default/deny-admin"
    status, _, _ = mtls_get(port, client, "/%61dmin")  # normalized before matching
    assert status == 403

    status, _, body = mtls_get(port, client, "/reports/q3")
    assert status == 200 and b'"path": "/reports/q3"' in body
    deadline = time.monotonic() + 5
    while "audit default/audit-reports" not in sidecar.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"audit default/audit-reports: GET /reports/q3 from {CLIENT}" in sidecar.logs()

    admin = sidecar.admin_port
    denied = metric(
        admin,
        "plait_requests_total",
        listener="in",
        code="403",
        reason="denied by authorization policy",
    )
    assert denied == 2
    no_allow = metric(
        admin,
        "plait_requests_total",
        listener="in",
        code="403",
        reason="no authorization policy allows",
    )
    assert no_allow == 2
    assert metric(admin, "plait_authz_audit_total", policy="default/audit-reports") == 1


def test_a_policy_for_other_labels_does_not_apply(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    policy = POLICIES.replace("{app: web}", "{app: billing}")
    port, _ = start_web(tmp_path, pki, procs, peer_auth("PERMISSIVE") + policy)
    other = client_context(pki, *pki.files("other", *pki.root.leaf(OTHER)))
    assert mtls_get(port, other, "/orders")[0] == 200


def test_invalid_policy_names_the_file_and_field(tmp_path: Path) -> None:
    bad = POLICIES.replace('paths: ["/admin*"]', 'paths: ["/a*b"]')
    cfg = write_config(
        tmp_path,
        "apiVersion: plait.dev/v1alpha1\nkind: Sidecar\nmetadata: {name: web}\nspec:\n"
        f"  admin: {{port: {free_port()}}}\n  ingress:\n"
        f"  - port: {{number: {free_port()}, protocol: http}}\n"
        "    defaultEndpoint: 127.0.0.1:9\n" + bad,
        "policies.yaml",
    )
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "validate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1
    assert "policies.yaml" in r.stderr
    assert "AuthorizationPolicy/deny-admin" in r.stderr
    assert "rules[0].to[0].operation.paths[0]" in r.stderr


TCP_POLICIES = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: default}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: ["plait.local/ns/default/sa/client", "*/sa/auditor"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-auditor-admin, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["*/sa/auditor"]}}]
    to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: default}
spec:
  action: AUDIT
  rules: [{}]
"""


def tcp_exchange(port: int, ctx: Any) -> bytes:
    """One HTTP request relayed over a tcp listener through mTLS; b"" when the sidecar
    closed the connection without relaying."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET /over-tcp HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                got = b""
                while chunk := tls.recv(65536):
                    got += chunk
                return got
        except (ssl.SSLError, ConnectionError):
            return b""  # TLS 1.3: the abort may come while the client reads


def test_a_tcp_listener_decides_each_connection_by_the_peer_identity(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    port, sidecar = start_web(tmp_path, pki, procs, peer_auth("STRICT") + TCP_POLICIES, "tcp")
    client = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    other = client_context(pki, *pki.files("other", *pki.root.leaf(OTHER)))
    auditor_id = f"spiffe://{TD}/ns/default/sa/auditor"
    auditor = client_context(pki, *pki.files("auditor", *pki.root.leaf(auditor_id)))

    got = tcp_exchange(port, client)
    assert got.startswith(b"HTTP/1.1 200") and b'"path": "/over-tcp"' in got
    assert tcp_exchange(port, other) == b""  # no ALLOW matches: closed, nothing relayed
    # the DENY names a path, which a tcp port cannot see: it applies to every connection
    assert tcp_exchange(port, auditor) == b""

    admin = sidecar.admin_port
    family = "plait_authz_denied_connections_total"
    assert metric(admin, family, policy="no-allow-match") == 1
    assert metric(admin, family, policy="default/deny-auditor-admin") == 1
    assert metric(admin, "plait_authz_audit_total", policy="default/audit-all") == 3
    assert f"audit default/audit-all: tcp connection on in from {auditor_id}" in sidecar.logs()
    # and an allowed peer is still served
    assert tcp_exchange(port, client).startswith(b"HTTP/1.1 200")


def test_a_tcp_listener_with_an_http_only_allow_policy_relays_nothing(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    only_http = TCP_POLICIES.split("---\n")[1].replace(
        'principals: ["plait.local/ns/default/sa/client", "*/sa/auditor"]}}]',
        'principals: ["*"]}}]\n    to: [{operation: {methods: [GET]}}]',
    )
    port, sidecar = start_web(
        tmp_path, pki, procs, peer_auth("STRICT") + "---\n" + only_http, "tcp"
    )
    client = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert tcp_exchange(port, client) == b""
    assert metric(sidecar.admin_port, "plait_authz_denied_connections_total",
                  policy="no-allow-match") == 1  # fmt: skip
