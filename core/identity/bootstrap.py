"""Trust in the control plane at first contact: a pinned root or a bundle file, never blind.

Theory of operation. The control plane serves its API and xDS over TLS with a certificate
from its own CA, so whoever talks to it must know that CA's roots first. A sidecar gets
them one of two ways:

* ``--ca-bundle FILE``: the roots, as the operator copied them from the control plane's
  ``<data-dir>/ca-bundle.pem``;
* the **pin** in its join token (``"pin"`` in the token's payload, the SHA-256 of the
  current root's SubjectPublicKeyInfo, as kubeadm's ``discovery-token-ca-cert-hash``):
  :func:`pinned_bundle` fetches the public roots (``GET /api/v1/ca/bundle``, no
  credentials) over an unverified TLS connection, keeps them only if one root's SPKI hash
  equals the pin, and then fetches them once more over a connection **verified** against
  them (the server proves it holds a certificate chaining to the pinned root). Nothing but
  those two GETs goes out before the check: a wrong pin stops the sidecar before the token
  or a CSR is sent.

Once the sidecar has its own certificate it trusts the bundle in its ``CertStore`` (the
one pushed over SDS), which includes the new root during a root rotation.

The token's payload is read without checking its MAC (only the control plane holds the
key): a forged pin can only make the sidecar refuse a control plane, never trust one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .store import CertStore

__all__ = [
    "BUNDLE_PATH",
    "ControlPlaneTrust",
    "TrustError",
    "bundle_context",
    "pinned_bundle",
    "spki_pin",
    "token_pin",
]

log = logging.getLogger(__name__)

BUNDLE_PATH = "/api/v1/ca/bundle"
_PREFIX = "sha256:"


class TrustError(PermissionError):
    """The control plane could not be verified (wrong pin, unusable bundle)."""


def spki_pin(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _PREFIX + hashlib.sha256(spki).hexdigest()


def token_pin(token: str) -> str | None:
    """The control plane's root pin carried in a join token, if it has one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error):
        return None
    pin = payload.get("pin") if isinstance(payload, dict) else None
    return pin if isinstance(pin, str) and pin.startswith(_PREFIX) else None


def bundle_context(bundle_pem: bytes) -> ssl.SSLContext:
    """A client context that verifies the server (chain and host name) against these roots."""
    try:
        ctx = ssl.create_default_context(cadata=bundle_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise TrustError(f"the control plane's trust bundle is unusable: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def pinned_bundle(server: str, pin: str, *, timeout: float = 10.0) -> bytes:
    """The control plane's roots, checked against ``pin`` (see the module docstring).

    Raises :class:`TrustError` when no root matches the pin, and ``OSError`` (a
    ``URLError``) when the control plane cannot be reached.
    """
    url = server.rstrip("/") + BUNDLE_PATH
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # checked below against the pin, then verified
    bundle = _get(url, blind, timeout)
    try:
        roots = x509.load_pem_x509_certificates(bundle)
    except ValueError:
        raise TrustError(f"{url} answered no PEM certificates") from None
    if not any(spki_pin(root) == pin for root in roots):
        got = ", ".join(spki_pin(r) for r in roots)
        raise TrustError(
            f"the control plane at {server} is not the one the join token names: "
            f"its roots are {got}, the token pins {pin}"
        )
    verified = _get(url, bundle_context(bundle), timeout)
    if verified != bundle:
        raise TrustError(f"the control plane at {server} changed its roots while being checked")
    return bundle


def _get(url: str, ctx: ssl.SSLContext, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url}: HTTP {exc.code}") from None
    except ValueError:
        raise TrustError(f"{url} did not answer JSON") from None
    bundle = body.get("bundle") if isinstance(body, dict) else None
    if not isinstance(bundle, str):
        raise TrustError(f"{url} answered no 'bundle'")
    return bundle.encode()


class ControlPlaneTrust:
    """The roots that verify the control plane, for the sidecar's xDS client and CA agent.

    With ``bundle_file`` the roots are read at once (:class:`TrustError` names the file
    when they are unusable). With a ``pin``, :meth:`resolve` fetches and checks them on
    first use (one attempt: an unreachable control plane raises ``OSError`` and the
    caller retries with its own backoff). Afterwards :meth:`roots_for` prefers the bundle
    of a certificate the CA issued to this sidecar (it follows root rotations over SDS).
    """

    def __init__(self, server: str, *, bundle_file: Path | None = None, pin: str | None = None):
        if bundle_file is None and pin is None:
            raise ValueError("a bundle file or a pin is needed")
        self.server = server
        self.pin = pin
        self.roots: bytes | None = None
        if bundle_file is not None:
            try:
                roots = bundle_file.read_bytes()
            except OSError as exc:
                raise TrustError(f"--ca-bundle {bundle_file}: {exc.strerror or exc}") from None
            try:
                bundle_context(roots)
            except TrustError as exc:
                raise TrustError(f"--ca-bundle {bundle_file}: {exc}") from None
            self.roots = roots
        self._lock = anyio.Lock()

    async def resolve(self) -> bytes:
        """The roots: :class:`TrustError` when the pin does not match, ``OSError`` when the
        control plane cannot be reached."""
        async with self._lock:  # the xDS client and the CA agent ask at once
            if self.roots is None:
                assert self.pin is not None
                self.roots = await anyio.to_thread.run_sync(pinned_bundle, self.server, self.pin)
                log.info("control plane %s verified against the join token's pin", self.server)
            return self.roots

    def roots_for(self, identity: CertStore | None) -> bytes:
        """The current roots: the CA-issued identity's bundle once it has one."""
        if identity is not None and identity.ready and identity.source == "agent":
            return identity.bundle_pem
        assert self.roots is not None, "resolve() first"
        return self.roots

    def api_context(self, identity: CertStore | None = None) -> ssl.SSLContext:
        """A client context for the control plane's API (HTTPS, host name verified)."""
        return bundle_context(self.roots_for(identity))
