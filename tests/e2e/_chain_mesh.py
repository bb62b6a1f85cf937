"""A 3-service chain of real sidecars on a real control plane, with identities from its CA.

:func:`chain_mesh` starts ``plait control-plane`` and applies Services ``svc1..svc3`` and
their Sidecars: each has a STRICT ingress to its app (``tests/support/trace_app.py``,
which calls the next service through its sidecar's egress) and, but the last, an egress
to the next Service; a Sidecar ``client`` has an egress to ``svc1``. Each service's
sidecar registers its Workload (``--service svcN --label version=vN``) and holds a join
token for its own service account, so every hop is mTLS with verified SPIFFE IDs.
``GET /call`` on the client sidecar's egress goes client → svc1 → svc2 → svc3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import HERE, PY, Proc, free_port, http_get, start, wait_port
from tests.support.controlplane import (
    apply,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

__all__ = ["ChainMesh", "call", "chain_mesh", "join"]

TRUST_DOMAIN = "plait.local"


@dataclass
class ChainMesh:
    cp: Proc
    entry: int
    """The client sidecar's egress port (to svc1)."""
    sidecars: dict[str, Proc] = field(default_factory=dict)
    """``client``, ``svc1``..``svc3``."""

    @staticmethod
    def spiffe(account: str) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{account}"


def _yaml(ports: dict[str, int]) -> str:
    docs = []
    for i in (1, 2, 3):
        docs.append(f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: svc{i}}}
spec:
  ports: [{{name: main, port: 8080, protocol: http}}]
""")  # fmt: skip
        out = f"{{name: out, port: {{number: {ports.get(f'out{i}')}}}, service: svc{i + 1}}}"
        egress = f"  egress:\n  - {out}\n" if i < 3 else ""
        docs.append(f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: svc{i}}}
spec:
  ingress:
  - name: in
    port: {{number: {ports[f"in{i}"]}}}
    defaultEndpoint: 127.0.0.1:{ports[f"app{i}"]}
{egress}""")  # fmt: skip
    docs.append(f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - {{name: out, port: {{number: {ports["out0"]}}}, service: svc1}}
""")  # fmt: skip
    docs.append("""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: plait-system}
spec: {mtls: {mode: STRICT}}
""")
    return "---\n".join(docs)


def join(tmp: Path, cp: Proc, name: str, *flags: str) -> Proc:
    """A sidecar of Sidecar ``name`` with a join token for service account ``name``."""
    token = plait(cp, "workload", "token", "-s", name).stdout.strip()
    env = {"PLAIT_JOIN_TOKEN": token, "PLAIT_CA_SERVER": f"https://127.0.0.1:{cp.extra['api']}"}
    return start_xds_sidecar(tmp, cp, name, "--service-account", name, *flags, env=env)


def chain_mesh(tmp: Path, procs: list[Proc]) -> ChainMesh:
    """Start everything (appending each process to ``procs``) and wait until every
    service's endpoint reached its caller's EDS."""
    cp = start_control_plane(tmp, extra=("--trust-domain", TRUST_DOMAIN))
    procs.append(cp)
    ports = {f"{k}{i}": free_port() for i in (1, 2, 3) for k in ("app", "in", "out")}
    ports["out0"] = free_port()
    apply(cp, tmp, _yaml(ports))
    mesh = ChainMesh(cp, ports["out0"])
    for i in (1, 2, 3):
        nxt = ["--next", str(ports[f"out{i}"])] if i < 3 else []
        log = tmp / f"app{i}.log"
        cmd = [PY, str(HERE / "trace_app.py"), "--port", str(ports[f"app{i}"]), "--name"]
        procs.append(Proc(start([*cmd, f"app{i}", *nxt], log), log))
        wait_port(ports[f"app{i}"])
        svc = join(tmp, cp, f"svc{i}", "--service", f"svc{i}", "--label", f"version=v{i}")
        procs.append(svc)
        mesh.sidecars[f"svc{i}"] = svc
    mesh.sidecars["client"] = join(tmp, cp, "client")
    procs.append(mesh.sidecars["client"])
    callers = {"client": "svc1", "svc1": "svc2", "svc2": "svc3"}
    for caller, callee in callers.items():

        def reached(caller: str = caller, callee: str = callee) -> bool:
            clusters = config_dump(mesh.sidecars[caller])["config"]["clusters"]
            return bool(clusters[f"{callee}.default:8080"]["endpoints"])

        wait_for(reached, timeout=30)
    return mesh


def call(mesh: ChainMesh) -> None:
    """One request through the whole chain (asserts it reached app3)."""
    status, _, body = http_get(mesh.entry, "/call", timeout=10)
    assert status == 200, body
    assert json.loads(body)["next"]["next"]["name"] == "app3", body
