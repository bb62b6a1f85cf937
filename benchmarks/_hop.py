"""Two-proxy hop targets: client proxy -> server proxy -> upstream, in plaintext or over
mutual TLS between the two proxies.

    plait-hop    plait sidecar (egress) -> plait sidecar (ingress), plaintext
    plait-mtls   the same, the server sidecar STRICT: mTLS between the sidecars, the client
                 sidecar checking the server's SPIFFE ID (auto mTLS, ``tlsMode: mutual``);
                 the HTTP/1.1 requests go between the sidecars as HTTP/2 (ALPN ``h2``), as
                 the mesh sends them by default
    plait-mtls-h1  the same with HTTP/1.1 between the sidecars (``h2UpgradePolicy:
                 DO_NOT_UPGRADE``)
    nginx-hop    nginx -> nginx, HTTP/1.1 keep-alive pooled upstream connections
    nginx-tls    the same, the first nginx originating TLS with a client certificate
                 (``proxy_ssl_*``, session reuse on) and the second terminating it and
                 requiring a client certificate

Both proxies of a target run in one process group pinned to the proxy core (a ``sh``
that starts both and waits), so the group's CPU time is the hop's. The certificates are
ECDSA P-256 leaves of one test root made here with ``cryptography``; the server's leaf
carries the SPIFFE ID (for plait) and a DNS name (for nginx's ``proxy_ssl_name`` check).
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import _configs

__all__ = [
    "SERVER_ID",
    "hop_argv",
    "hop_cmds",
    "nginx_argv",
    "nginx_server_conf",
    "sh_argv",
    "write_pki",
]

SERVER_ID = "spiffe://plait.local/ns/default/sa/server"
CLIENT_ID = "spiffe://plait.local/ns/default/sa/client"
SERVER_DNS = "server.mesh.local"


def _cert(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey, sans: list[x509.GeneralName] | None,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(signer, hashes.SHA256())


def write_pki(d: Path) -> None:
    """``bundle.pem`` and ``server``/``client`` ``.pem``/``.key`` (mode 0600) in ``d``."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench root")])
    root = _cert(name, root_key, name, root_key, None)
    enc = serialization.Encoding.PEM
    (d / "bundle.pem").write_bytes(root.public_bytes(enc))
    for who, spiffe, dns in (("server", SERVER_ID, SERVER_DNS), ("client", CLIENT_ID, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe)]
        sans += [x509.DNSName(dns)] if dns else []
        leaf = _cert(x509.Name([]), key, name, root_key, sans)
        (d / f"{who}.pem").write_bytes(leaf.public_bytes(enc))
        key_file = d / f"{who}.key"
        fmt, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        key_file.write_bytes(key.private_bytes(enc, fmt, none))
        key_file.chmod(0o600)


def _plait_server(port: int, admin: int, upstream_port: int, tls: bool) -> str:
    peer = """---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"""
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: server}}
spec:
  admin: {{port: {admin}}}
  ingress:
  - name: in
    port: {{number: {port}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{upstream_port}
{peer if tls else ""}"""


_KEEP_H1 = """---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: keep-h1}
spec:
  targetRefs: [{kind: Service, name: server}]
  h2UpgradePolicy: DO_NOT_UPGRADE
"""


def _plait_client(
    h1: int, h2: int, admin: int, server_port: int, tls: bool, keep_h1: bool = False
) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: server}}
spec:
  ports: [{{name: http, port: 80, protocol: http}}]
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: server-1}}
spec:
  service: server
  serviceAccount: server
  address: 127.0.0.1
  ports: [{{port: 80, targetPort: {server_port}}}]
{"  tlsMode: mutual" if tls else ""}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  admin: {{port: {admin}}}
  egress:
  - port: {{number: {h1}, protocol: http}}
    service: server
  - port: {{number: {h2}, protocol: http2}}
    service: server
""" + (_KEEP_H1 if keep_h1 else "")


def nginx_server_conf(d: Path, port: int, upstream_port: int, tls: bool) -> str:
    ssl = f"""
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/bundle.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;"""
    body = f"""\
    upstream up {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} {"ssl " if tls else ""}backlog=4096;{ssl if tls else ""}
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
    return _configs.NGINX_MAIN.format(d=d / "server", body=body)


def _nginx_client_conf(d: Path, h1: int, h2: int, server_port: int, tls: bool) -> str:
    ssl = f"""
            proxy_ssl_certificate {d}/client.pem;
            proxy_ssl_certificate_key {d}/client.key;
            proxy_ssl_trusted_certificate {d}/bundle.pem;
            proxy_ssl_verify on;
            proxy_ssl_name {SERVER_DNS};
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_session_reuse on;"""
    body = f"""\
    upstream up {{
        server 127.0.0.1:{server_port};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2} http2 backlog=4096;
        location / {{
            proxy_pass {"https" if tls else "http"}://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";{ssl if tls else ""}
        }}
    }}"""
    return _configs.NGINX_MAIN.format(d=d / "client", body=body)


def hop_argv(
    d: Path, kind: str, tls: bool, ports: list[int], upstream_port: int, plait: Path,
    keep_h1: bool = False, observe: str = "",
) -> tuple[list[str], list[int]]:  # fmt: skip
    """The ``sh`` command that runs both proxies of a hop target (files written to ``d``),
    and the admin ports to wait on for ``/ready`` (plait; none for nginx).

    ``ports``: the client proxy's h1 and h2 ports, then three more (server port, admin
    ports).
    """
    cmds, ready = hop_cmds(d, kind, tls, ports, upstream_port, plait, keep_h1, observe)
    return sh_argv(cmds), ready


def hop_cmds(
    d: Path, kind: str, tls: bool, ports: list[int], upstream_port: int, plait: Path,
    keep_h1: bool = False, observe: str = "",
) -> tuple[list[list[str]], list[int]]:  # fmt: skip
    """The commands of a hop target's server and client proxy (in that order), as
    :func:`hop_argv` runs them, and the admin ports to wait on (``keep_h1``: plait's
    sidecars talk HTTP/1.1 to each other; ``observe``: both sidecars' observability, as
    ``TargetSpec.observe``)."""
    write_pki(d)
    h1, h2, server_port, admin_c, admin_s = ports
    if kind == "plait-hop":
        server = _plait_server(server_port, admin_s, upstream_port, tls)
        client = _plait_client(h1, h2, admin_c, server_port, tls, keep_h1)
        for who, conf in (("server", server), ("client", client)):
            observed = _configs.observe(conf, observe, d / f"{who}-access.log", upstream_port)
            (d / f"{who}.yaml").write_text(observed)
        cmds = []
        for who in ("server", "client"):
            argv = [str(plait), "sidecar", "--config", str(d / f"{who}.yaml")]
            if tls:
                argv += ["--identity-cert", str(d / f"{who}.pem"),
                         "--identity-key", str(d / f"{who}.key"),
                         "--trust-bundle", str(d / "bundle.pem")]  # fmt: skip
            cmds.append(argv)
        ready = [admin_s, admin_c]
    else:
        for who, text in (
            ("server", nginx_server_conf(d, server_port, upstream_port, tls)),
            ("client", _nginx_client_conf(d, h1, h2, server_port, tls)),
        ):
            (d / who).mkdir()
            (d / f"{who}.conf").write_text(text)
        cmds = [nginx_argv(d, who) for who in ("server", "client")]
        ready = []
    return cmds, ready


def nginx_argv(d: Path, who: str) -> list[str]:
    """nginx on ``d/<who>.conf``, its files in ``d/<who>/``."""
    return ["nginx", "-p", f"{d}/{who}/", "-c", str(d / f"{who}.conf"),
            "-e", str(d / who / "error.log")]  # fmt: skip


def sh_argv(cmds: list[list[str]]) -> list[str]:
    """One ``sh`` that starts every command in the background and waits for them."""
    return ["sh", "-c", " & ".join(shlex.join(c) for c in cmds) + " & wait"]
