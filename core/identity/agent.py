"""The sidecar's identity agent: gets its workload certificate from the CA and keeps it fresh.

Theory of operation: :class:`IdentityAgent` generates an ECDSA P-256 key in the process
(the key is never sent anywhere; only a CSR for it is) and asks the control plane's CA
(``POST /api/v1/certificates``) for a certificate:

* the **first** time with the join token (single use), claiming the service account the
  sidecar was started with, if one was given (the CA refuses a token bound to another);
* every **renewal** with a proof of possession of the current leaf
  (:mod:`plait.core.identity.proof`) and a new key, so a leaked old key stops mattering
  when its certificate expires.

Each answer (chain, trust bundle) goes into the :class:`CertStore` in one update: new
handshakes use it, open connections finish on the old one, and a changed bundle (a root
rotation) takes effect at once. Renewal is due at half of the lifetime counted from
when the certificate arrived, moved by a random jitter of up to ±10% of the lifetime so
that sidecars started together do not renew together. If the CA cannot be reached (or
answers 5xx) the agent keeps the current certificate and retries with exponential
backoff (``backoff`` up to ``max_backoff`` seconds, with jitter). A first certificate
refused by the CA (bad, used or expired token) is fatal: :class:`IdentityError` stops the
sidecar with the CA's reason, since retrying a refused single-use token cannot succeed.
A refused renewal is logged as an error and retried with the longest backoff.

HTTP goes through ``urllib`` in a worker thread: one small request per lifetime. The CA's
HTTPS server is verified against the :class:`ControlPlaneTrust` (``bootstrap.py``): the
pinned or given roots for the first certificate, the bundle of the current one afterwards.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.abc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .bootstrap import ControlPlaneTrust, TrustError
from .proof import sign_renewal
from .store import CertStore, Leaf

__all__ = ["IdentityAgent", "IdentityError", "IdentityOptions"]

log = logging.getLogger(__name__)

PATH = "/api/v1/certificates"


class IdentityError(PermissionError):
    """The CA refused to certify this sidecar; the message carries the CA's reason.

    A :class:`PermissionError`, so the sidecar's start-up reports it as one line, like
    any other refusal of a resource it needs.
    """


class _Unavailable(Exception):
    """The CA could not be reached or failed (retry later)."""


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{message} ({reason}, HTTP {status})")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class IdentityOptions:
    server: str
    """The CA API's base URL, e.g. ``https://127.0.0.1:15014``."""
    token: str
    namespace: str | None = None
    service_account: str | None = None
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0


class IdentityAgent:
    def __init__(
        self,
        store: CertStore,
        opts: IdentityOptions,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        trust: ControlPlaneTrust | None = None,
    ) -> None:
        self.store = store
        self.trust = trust
        """Verifies the CA's HTTPS server (``None``: the system's roots)."""
        store.source = "agent"
        self.opts = opts
        self.clock = clock
        self.sleep = sleep
        """Waits (until a renewal, between retries); tests pass one that moves their clock."""
        self.rng = rng or random.Random()
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.renew_at = 0.0
        self.renewals = 0
        self.failures = 0

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Leaf] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Get the first certificate, report it started, then renew until cancelled."""
        leaf = await self._until_issued(first=True)
        task_status.started(leaf)
        while True:
            await self.sleep(max(0.0, self.renew_at - self.clock()))
            await self._until_issued(first=False)
            self.renewals += 1

    async def run_first(self) -> Leaf:
        """Get only the first certificate (no renewals)."""
        return await self._until_issued(first=True)

    async def _until_issued(self, *, first: bool) -> Leaf:
        delay = self.opts.backoff
        while True:
            try:
                return await self._issue(first)
            except _Unavailable as exc:
                self.failures += 1
                self.store.note_failure(f"the CA at {self.opts.server} is unavailable: {exc}")
                log.warning(
                    "identity: the CA at %s is unavailable (%s); %s, retry in %.1fs",
                    self.opts.server,
                    exc,
                    "no certificate yet" if first else "keeping the current certificate",
                    delay,
                )
            except _Refused as exc:
                self.failures += 1
                self.store.note_failure(f"the CA refused: {exc}")
                if first:
                    raise IdentityError(f"the CA refused the join token: {exc}") from None
                log.error("identity: the CA refused the renewal: %s; retry in %.1fs", exc, delay)
                delay = self.opts.max_backoff
            await self.sleep(delay * self.rng.uniform(0.8, 1.2))
            delay = min(delay * 2, self.opts.max_backoff)

    async def _issue(self, first: bool) -> Leaf:
        if self.trust is not None:
            try:  # a wrong pin stops here (TrustError), before the token is sent
                await self.trust.resolve()
            except TrustError:
                raise
            except OSError as exc:
                raise _Unavailable(str(getattr(exc, "reason", exc))) from None
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        body: dict[str, Any] = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
        if first:
            body["token"] = self.opts.token
            if self.opts.namespace is not None:
                body["namespace"] = self.opts.namespace
            if self.opts.service_account is not None:
                body["serviceAccount"] = self.opts.service_account
        else:
            assert self._key is not None
            now = int(self.clock())
            body["renewal"] = {
                "chain": self.store.chain_pem.decode(),
                "timestamp": now,
                "signature": sign_renewal(self._key, csr, now),
            }
        out = await anyio.to_thread.run_sync(self._post, json.dumps(body).encode())
        received = self.clock()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            leaf = self.store.update(
                chain_pem=out["chain"].encode(), key_pem=key_pem, bundle_pem=out["bundle"].encode()
            )
        except (KeyError, AttributeError, ValueError) as exc:
            raise _Unavailable(f"unusable answer: {exc}") from None
        self._key = key
        lifetime = leaf.not_after.timestamp() - received
        self.renew_at = received + lifetime * (0.5 + self.rng.uniform(-0.1, 0.1))
        self.store.next_renewal = datetime.fromtimestamp(self.renew_at, UTC)
        log.info(
            "identity: %s certificate for %s, serial %x, valid until %s, renewal in %.0fs",
            "first" if first else "renewed",
            leaf.spiffe_id,
            leaf.serial,
            leaf.not_after.isoformat(),
            self.renew_at - received,
        )
        return leaf

    def _post(self, data: bytes) -> dict[str, Any]:
        req = urllib.request.Request(
            self.opts.server.rstrip("/") + PATH,
            data=data,
            method="POST",
            headers={"content-type": "application/json"},
        )
        context = self.trust.api_context(self.store) if self.trust is not None else None
        try:
            with urllib.request.urlopen(req, timeout=self.opts.timeout, context=context) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())
            except (ValueError, OSError):
                err = {}
            if 400 <= exc.code < 500:
                raise _Refused(
                    exc.code, str(err.get("reason", "refused")), str(err.get("error", exc.reason))
                ) from None
            raise _Unavailable(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _Unavailable(str(getattr(exc, "reason", exc))) from None
        if not isinstance(out, dict):
            raise _Unavailable("the answer is not a JSON object")
        return out
