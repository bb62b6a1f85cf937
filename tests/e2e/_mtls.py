"""Outbound mTLS end-to-end helpers: a test CA, mTLS upstreams, a sidecar with an identity.

The sidecar takes its identity from files (``--identity-cert/--identity-key/--trust-bundle``,
read again on SIGHUP). The upstream is
``tests/support/mtls_server.py`` (Python ``ssl``, client certificate required), which
answers with the SPIFFE ID and serial of the certificate the sidecar presented.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support import (
    HERE,
    PY,
    Proc,
    free_port,
    http_get,
    ready_or_stopped,
    start,
    wait_port,
    write_config,
)
from tests.support.pki import Authority

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


def identity_args(where: Path) -> list[str]:
    """The sidecar flags that load the identity in ``where``."""
    return [
        "--identity-cert", str(where / "chain.pem"),
        "--identity-key", str(where / "key.pem"),
        "--trust-bundle", str(where / "bundle.pem"),
    ]  # fmt: skip


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
        cmd = [PY, "-m", "plait.core.ops.cli", "--log-level", "info", "sidecar",
               *identity_args(self.client_dir), "--config", str(path)]  # fmt: skip
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


def metrics(admin: int) -> str:
    return http_get(admin, "/metrics")[2].decode()
