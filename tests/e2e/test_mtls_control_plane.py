"""PeerAuthentication and AuthorizationPolicy pushed by the control plane over xDS."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import Proc, free_port, http_get, start_echo
from tests.support.controlplane import apply, start_control_plane, start_xds_sidecar, wait_for
from tests.support.mtls import CLIENT, TD, Pki, client_context, mtls_get, refusals, refused
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e

WEB = f"spiffe://{TD}/ns/default/sa/web"


def _mesh(app: int, ingress: int, mode: str) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web, labels: {{app: web}}}}
spec:
  ingress:
  - name: in
    port: {{number: {ingress}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: plait-system}}
spec: {{mtls: {{mode: {mode}}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: clients-only, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  rules: [{{from: [{{source: {{principals: ["{TD}/ns/default/sa/client"]}}}}]}}]
"""


def test_policies_arrive_over_xds_and_follow_a_change(tmp_path: Path, procs: list[Proc]) -> None:
    pki = Pki(tmp_path, Authority.create("mesh root"))
    app = start_echo(tmp_path, "web-app")
    cp = start_control_plane(tmp_path)
    procs += [app, cp]
    ingress = free_port()
    apply(cp, tmp_path, _mesh(app.port, ingress, "STRICT"))
    cert, key = pki.files("web", *pki.root.leaf(WEB))
    flags = ("--identity-cert", str(cert), "--identity-key", str(key))
    web = start_xds_sidecar(tmp_path, cp, "web", *flags, "--trust-bundle", str(pki.bundle))
    procs.append(web)
    client = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    other = client_context(
        pki, *pki.files("other", *pki.root.leaf(f"spiffe://{TD}/ns/default/sa/other"))
    )
    wait_for(lambda: mtls_get(ingress, client, "/x")[0] == 200)
    status, headers, _ = mtls_get(ingress, other, "/x")
    assert (status, headers["x-plait-denied"]) == (403, "no-allow-match")
    try:
        http_get(ingress, "/plain", timeout=5)
        plain_served = True
    except OSError:
        plain_served = False
    assert not plain_served
    assert refusals(web.admin_port, "plaintext") >= 1

    apply(cp, tmp_path, _mesh(app.port, ingress, "DISABLE"), name="disable.yaml")
    wait_for(lambda: refused(ingress, client))
    assert http_get(ingress, "/plain")[0] == 403  # plaintext now, but no principal: not allowed
