"""The control plane's own certificate: its API and xDS ports over TLS.

Theory of operation. :class:`ServingIdentity` asks the control plane's CA (in process)
for a certificate for a key generated here, with the SPIFFE ID
``spiffe://<trust-domain>/ns/plait-system/sa/control-plane`` and DNS/IP SANs for the
addresses clients use (``localhost``, ``127.0.0.1`` and the bind address), so that
ordinary TLS clients verify the host name as well. It keeps one
:class:`ssl.SSLContext` for the API: the listener's *front* context has an
``sni_callback`` that moves each handshake onto the current one (as the sidecar's
``CertStore.listener_context`` does), so a renewal applies to the next connection and
open ones finish on the old certificate. xDS gets ``grpc.dynamic_ssl_server_credentials``
whose fetcher hands grpc the new pair, and the CA's current roots, once per renewal (a root
rotation renews at once, so both roots verify clients while it lasts). The xDS port
requires a client certificate that verifies against those roots: a sidecar gets its first
certificate from the API (join token and CSR) before it opens xDS, and the node it may be is
bound to that certificate's identity (``_node_auth.py``); clients without a certificate use
the plaintext port, when one is asked for (``--xds-plaintext-port``). The API requests no
client certificate: a bootstrapping sidecar has none yet, and the admin token or the join
token authenticates its requests.

:meth:`run` renews at half of the lifetime, and at once (checked every second) when the
CA's roots change: a root rotation starts or ends. Every certificate comes from the
current intermediate with the CA's chain (the cross-signed root during a rotation), so
clients holding the old bundle and clients holding the new one both verify it. The
current roots are written to ``<data-dir>/ca-bundle.pem`` (mode 0644: roots are public)
atomically with each certificate: the CLI on this host reads it, operators copy it to
``--ca-bundle``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._token import BUNDLE_FILE
from .ca import CAService

__all__ = ["BUNDLE_FILE", "SERVING_NAMESPACE", "SERVING_SA", "ServingIdentity"]

log = logging.getLogger("plait.controlplane")

SERVING_NAMESPACE = "plait-system"
SERVING_SA = "control-plane"


class ServingIdentity:
    def __init__(self, ca: CAService, data_dir: Path, binds: tuple[str, ...]) -> None:
        self.ca = ca
        self.bundle_file = data_dir / BUNDLE_FILE
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        for host in dict.fromkeys(("127.0.0.1", *binds)):
            try:
                addr = ipaddress.ip_address(host)
            except ValueError:
                names.append(x509.DNSName(host))
                continue
            if not addr.is_unspecified:
                names.append(x509.IPAddress(addr))
        self._sans = tuple(names)
        self.spiffe_id = f"spiffe://{ca.ca.trust_domain}/ns/{SERVING_NAMESPACE}/sa/{SERVING_SA}"
        self._context: ssl.SSLContext | None = None
        self.chain_pem = b""
        self.key_pem = b""
        self._grpc_version = 0
        self._grpc_sent = 0
        self.renew_at = 0.0
        self._written = b""
        self.renew()

    def renew(self) -> None:
        """A new key and certificate; the next handshakes on both ports use them."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        ttl = self.ca.leaf_ttl
        issued = self.ca.ca.issue(csr, self.spiffe_id, ttl, extra_sans=self._sans, counted=False)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        _load_chain(ctx, issued.chain_pem, key_pem)
        self._context, self.chain_pem, self.key_pem = ctx, issued.chain_pem, key_pem
        self._grpc_version += 1
        # Real time, not the CA's clock (tests move that one): half of what is left.
        left = issued.leaf.not_valid_after_utc - self.ca.ca.clock()
        self.renew_at = time.time() + min(ttl, left).total_seconds() / 2
        self.write_bundle()
        log.info("control plane: serving certificate %s (serial %x), valid until %s",
                 self.spiffe_id, issued.leaf.serial_number,
                 issued.leaf.not_valid_after_utc.isoformat())  # fmt: skip

    def write_bundle(self) -> None:
        """``<data-dir>/ca-bundle.pem``: the CA's current roots, rewritten when they change."""
        bundle = self.ca.ca.bundle_pem()
        if bundle == self._written:
            return
        tmp = self.bundle_file.with_name(f".{BUNDLE_FILE}.{os.getpid()}")
        tmp.write_bytes(bundle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.bundle_file)
        self._written = bundle

    def api_context(self) -> ssl.SSLContext:
        """The API listener's front context; each handshake moves onto the current one."""
        front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        front.minimum_version = ssl.TLSVersion.TLSv1_2
        front.set_alpn_protocols(["http/1.1"])
        front.sni_callback = self._choose
        return front

    def _choose(self, sslobj: Any, server_name: str | None, front: ssl.SSLContext) -> None:
        sslobj.context = self._context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """xDS server credentials that follow renewals and require a client certificate that
        verifies against the CA's current roots."""
        self._grpc_sent = self._grpc_version
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), self._fetch, require_client_authentication=True
        )

    def _grpc_config(self) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(self.key_pem, self.chain_pem)], root_certificates=self.ca.ca.bundle_pem()
        )

    def _fetch(self) -> Any:
        if self._grpc_sent == self._grpc_version:
            return None  # unchanged
        self._grpc_sent = self._grpc_version
        return self._grpc_config()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Renew at half-life and keep the bundle file current, until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(1.0)
            try:
                # A changed bundle (a root rotation starts or ends): a certificate from the
                # current intermediate, whose chain verifies against old and new bundles.
                if time.time() >= self.renew_at or self.ca.ca.bundle_pem() != self._written:
                    self.renew()
            except Exception:  # the CA expired, the disk is full: keep serving, log, retry
                log.exception("control plane: cannot renew the serving certificate")


def _load_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    # ssl loads certificates from files only; a private temporary directory holds them briefly.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(chain_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
