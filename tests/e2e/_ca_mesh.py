"""Two sidecars that get their identities from a real control plane's CA (join tokens).

:func:`ca_mesh` starts ``plait control-plane`` (with ``--trust-domain``), applies a mesh of
one Service ``server`` (protocol ``http`` or ``grpc``) whose Sidecar ``server`` has a
STRICT ingress to the app, and a Sidecar ``client`` with an egress to ``server``; then a
server sidecar that registers its Workload (``--service server``) and a client sidecar,
each with a join token for its own service account, and waits until the server's
endpoint reached the client. The server sidecar writes an access log. Everything is real
processes on loopback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.support import Proc, free_port
from tests.support.controlplane import (
    apply,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

__all__ = ["CaMesh", "access_lines", "ca_mesh"]


@dataclass
class CaMesh:
    cp: Proc
    server: Proc
    client: Proc
    egress: int
    """The client sidecar's outbound port: the app's way to the server."""
    ingress: int
    access_log: Path
    """The server sidecar's access log."""
    trust_domain: str

    def spiffe(self, account: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/default/sa/{account}"


def _yaml(app: int, ingress: int, egress: int, protocol: str, log: Path) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: server}}
spec:
  ports: [{{name: main, port: 8080, protocol: {protocol}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: server}}
spec:
  accessLog: {{path: {log}}}
  ingress:
  - name: in
    port: {{number: {ingress}, protocol: {protocol}}}
    defaultEndpoint: 127.0.0.1:{app}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - {{name: out, port: {{number: {egress}, protocol: {protocol}}}, service: server}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: plait-system}}
spec: {{mtls: {{mode: STRICT}}}}
"""


def _sidecar(tmp: Path, cp: Proc, name: str, *flags: str) -> Proc:
    token = plait(cp, "workload", "token", "-s", name).stdout.strip()
    env = {"PLAIT_JOIN_TOKEN": token, "PLAIT_CA_SERVER": f"https://127.0.0.1:{cp.extra['api']}"}
    return start_xds_sidecar(tmp, cp, name, "--service-account", name, *flags, env=env)


def ca_mesh(
    tmp: Path, procs: list[Proc], app: int, *, protocol: str = "http",
    trust_domain: str = "plait.local", extra: str = "",
) -> CaMesh:  # fmt: skip
    """Start the control plane and both sidecars (each ready: it holds its certificate);
    ``extra``: more YAML documents for the mesh (each starting with ``---``)."""
    cp = start_control_plane(tmp, extra=("--trust-domain", trust_domain))
    procs.append(cp)
    ingress, egress, log = free_port(), free_port(), tmp / "server-access.log"
    apply(cp, tmp, _yaml(app, ingress, egress, protocol, log) + extra)
    server = _sidecar(tmp, cp, "server", "--service", "server")
    procs.append(server)
    client = _sidecar(tmp, cp, "client")
    procs.append(client)

    def registered() -> bool:  # the server's Workload reached the client's EDS
        clusters = config_dump(client)["config"]["clusters"]
        return bool(clusters["server.default:8080"]["endpoints"])

    wait_for(registered, timeout=20)
    return CaMesh(cp, server, client, egress, ingress, log, trust_domain)


def access_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
