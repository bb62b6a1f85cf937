"""The control plane's Prometheus http_sd endpoint, read as Prometheus reads it.

Real processes: a control plane and sidecars (one registers a Workload of a Service,
one does not). ``GET /api/v1/prometheus/targets`` over HTTPS with the admin token lists
each connected sidecar's admin address and labels; without the token it is refused;
a sidecar that stops leaves the list.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    api_context,
    api_url,
    apply,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e

_MESH = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web, namespace: shop}}
spec:
  ingress:
  - port: {{number: {ingress}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: batch}}
spec:
  ingress:
  - port: {{number: {batch}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
"""


def _targets(cp: Proc, token: str | None) -> Any:
    req = urllib.request.Request(f"{api_url(cp)}/api/v1/prometheus/targets")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=api_context(cp), timeout=5) as r:
        assert r.headers["content-type"].startswith("application/json")
        return json.loads(r.read())


def test_connected_sidecars_are_listed_with_their_labels(tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        cp = start_control_plane(tmp_path)
        procs.append(cp)
        assert cp.config is not None
        token = (cp.config / "admin-token").read_text().strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            _targets(cp, None)
        refused.value.close()
        assert refused.value.code == 401
        assert _targets(cp, token) == []  # nothing connected: an empty list, still 200
        app = start_echo(tmp_path)
        procs.append(app)
        apply(cp, tmp_path, _MESH.format(ingress=free_port(), batch=free_port(), app=app.port))
        web = start_xds_sidecar(tmp_path, cp, "web.shop", "--service", "web",
                                "--label", "version=v7")  # fmt: skip
        procs.append(web)
        batch = start_xds_sidecar(tmp_path, cp, "batch")
        procs.append(batch)
        wait_for(lambda: len(_targets(cp, token)) == 2, timeout=15)
        groups = {g["labels"]["sidecar"]: g for g in _targets(cp, token)}
        assert groups["web"]["targets"] == [f"127.0.0.1:{web.admin_port}"]
        labels = groups["web"]["labels"]
        assert labels["namespace"] == "shop" and labels["service"] == "web"
        assert labels["version"] == "v7" and labels["workload"]
        assert "identity" not in labels  # plaintext xDS: no verified identity to show
        assert groups["batch"]["targets"] == [f"127.0.0.1:{batch.admin_port}"]
        assert groups["batch"]["labels"]["namespace"] == "default"
        assert "service" not in groups["batch"]["labels"]
        # each target is what Prometheus will scrape: the sidecar's /metrics
        for group in groups.values():
            port = int(group["targets"][0].rpartition(":")[2])
            status, _, body = http_get(port, "/metrics", timeout=5)
            assert status == 200 and b"plait_config_info" in body
        batch.stop()
        wait_for(lambda: [g["labels"]["sidecar"] for g in _targets(cp, token)] == ["web"])
    finally:
        for p in reversed(procs):
            p.stop()
