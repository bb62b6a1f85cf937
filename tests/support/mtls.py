"""Helpers of the inbound mTLS and authorization end-to-end tests: a test PKI on disk, a
sidecar with an identity from files, mTLS clients made with Python's ``ssl``, /metrics."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import Proc, free_port, http_get, start_echo, start_sidecar, write_config
from tests.support.pki import Authority

TD = "plait.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"
CLIENT = f"spiffe://{TD}/ns/default/sa/client"


@dataclass
class Pki:
    dir: Path
    root: Authority

    def files(self, name: str, chain: bytes, key: bytes) -> tuple[Path, Path]:
        cert_file, key_file = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_file.write_bytes(chain)
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        return cert_file, key_file

    @property
    def bundle(self) -> Path:
        path = self.dir / "bundle.pem"
        if not path.exists() or path.read_bytes() != self.root.pem:
            path.write_bytes(self.root.pem)  # once: a rewrite would look like a rotation
        return path


def mesh(
    app: int,
    port: int,
    admin: int,
    extra: str = "",
    labels: str = "{app: web}",
    protocol: str = "http",
) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web, labels: {labels}}}
spec:
  admin: {{port: {admin}}}
  ingress:
  - name: in
    port: {{number: {port}, protocol: {protocol}}}
    defaultEndpoint: 127.0.0.1:{app}
{extra}"""


def peer_auth(mode: str) -> str:
    return f"""---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec:
  mtls: {{mode: {mode}}}
"""


def start_web(
    tmp: Path, pki: Pki, procs: list[Proc], extra: str, protocol: str = "http", *args: str
) -> tuple[int, Proc]:
    app = start_echo(tmp, "web-app")
    procs.append(app)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp, mesh(app.port, port, admin, extra, protocol=protocol))
    cert, key = pki.files("web", *pki.root.leaf(WEB))
    flags = ("--identity-cert", str(cert), "--identity-key", str(key))
    sidecar = start_sidecar(cfg, admin, *flags, "--trust-bundle", str(pki.bundle), *args)
    procs.append(sidecar)
    return port, sidecar


def client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the sidecar's certificate names a SPIFFE ID, not a host
    ctx.load_verify_locations(cafile=str(pki.bundle))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def mtls_get(port: int, ctx: ssl.SSLContext, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        mtls_get(port, ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return True
    return False


def metric(admin: int, family: str, **labels: str) -> float:
    """The sum of the samples of ``family`` that have these labels (PromQL's ``sum``): a
    request counter has more labels (the mesh's) than a test names."""
    _, _, body = http_get(admin, "/metrics")
    return sum(
        s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
        if s.name == family and all(s.labels.get(k) == v for k, v in labels.items())
    )


def refusals(admin: int, reason: str) -> float:
    return metric(admin, "plait_inbound_mtls_refused_total", listener="in", reason=reason)
