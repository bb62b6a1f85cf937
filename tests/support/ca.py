"""An in-process control plane with its CA on a real socket, and a clock the tests move.

Tests talk to it over HTTP with ``http.client`` like a sidecar would; the CA's clock is
a :class:`Clock` so expiry and the end of a root rotation are tested without waiting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plait.controlplane.server import ControlPlaneOptions, RunningControlPlane, run_control_plane
from plait.core.identity.bootstrap import ControlPlaneTrust


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def make_csr(key: Any = None, uri: str | None = None) -> tuple[Any, str]:
    """``(key, csr_pem)``: a fresh P-256 key (or ``key``) and a CSR signed by it."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uri:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class CAServer:
    portal: BlockingPortal
    running: RunningControlPlane
    clock: Clock
    data_dir: Path

    @property
    def port(self) -> int:
        return self.running.api_port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def tls(self) -> ssl.SSLContext:
        """Trusts the control plane's own roots (its API is HTTPS)."""
        return ssl.create_default_context(cafile=str(self.data_dir / "ca-bundle.pem"))

    def trust(self) -> ControlPlaneTrust:
        """What a sidecar given ``--ca-bundle`` verifies this control plane with."""
        return ControlPlaneTrust(self.url, bundle_file=self.data_dir / "ca-bundle.pem")

    def request(
        self, method: str, path: str, body: Any = None, *, admin: bool = True
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"content-type": "application/json"}
        if admin:
            headers["authorization"] = f"Bearer {self.running.token}"
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
        finally:
            conn.close()

    def token(self, namespace: str = "default", sa: str = "web", ttl: float = 600) -> str:
        status, _, body = self.request(
            "POST", "/api/v1/tokens", {"namespace": namespace, "serviceAccount": sa, "ttl": ttl}
        )
        assert status == 201, body
        return str(body["token"])

    def certificate(self, body: Any) -> tuple[int, Any]:
        status, _, out = self.request("POST", "/api/v1/certificates", body, admin=False)
        return status, out

    def status(self) -> Any:
        status, _, body = self.request("GET", "/api/v1/ca")
        assert status == 200, body
        return body


@contextlib.contextmanager
def ca_server(data_dir: Path, clock: Clock | None = None, **options: Any) -> Iterator[CAServer]:
    """A control plane on a free loopback port with its CA in ``data_dir/ca``."""
    clock = clock or Clock()
    options.setdefault("api_port", 0)
    opts = ControlPlaneOptions(data_dir=data_dir, ca_clock=clock, **options)
    with start_blocking_portal("asyncio") as portal:
        run = functools.partial(run_control_plane, handle_signals=False)
        future, running = portal.start_task(run, opts)
        try:
            yield CAServer(portal, running, clock, data_dir)
        finally:
            future.cancel()
