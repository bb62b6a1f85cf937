"""The CA's requests, independent of HTTP: first certificates, renewals, tokens, status.

Theory of operation: :class:`CAService` owns the :class:`CertificateAuthority` and the
:class:`JoinTokens` of one control plane. Each request either returns a JSON-ready
result or raises :class:`Refused` with an HTTP status (400 for a malformed request,
401 for a token or proof that does not verify, 403 for a genuine credential that may
not have this certificate, 409 for a rotation that cannot start, 503 while the CA's
intermediate has expired), a reason code and a
message. Every refusal is logged with its reason and counted (``refusals`` in the
status), so an operator sees forged or replayed tokens.

A certificate request is answered in two steps, so that the requests of one event-loop
turn can share a ledger transaction (``GroupCommit``, ``_group.py``): :meth:`CAService.prepare`
does every check and signs the leaf without writing anything, and returns the
:class:`Issuance` (the leaf and the ledger :class:`Entry` that records it); once that
entry is committed, :meth:`CAService.answer` makes the JSON answer, or refuses it if the
ledger found its token used already.

A first certificate: the join token must verify (MAC, expiry, claimed identity) and is
spent by its entry (single use: the ledger refuses an id it holds) and the leaf gets
the token's identity. A renewal: the presented leaf (the first certificate of the
chain; the rest is not read) must be one the ledger recorded
(``CertificateAuthority.recorded``: the same SHA-256, so the very certificate the CA
signed), the caller proves possession of its key (``plait.core.identity.proof``), and
the new leaf gets that leaf's identity; the CSR's subject and SANs are never used. The
CSR is parsed once and its key read once (``_x509.CheckedCSR``) for the checks, the
proof and the leaf.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
from collections import Counter
from typing import Any, NamedTuple

from cryptography import x509

from plait.core.identity.bootstrap import spki_pin
from plait.core.identity.proof import verify_renewal
from plait.sdk import InvalidSpiffeId, SpiffeId

from ._authority import CAExpired, CertificateAuthority, Issued, RotationRefused
from ._ledger import Entry
from ._tokens import JoinTokens, TokenRefused
from ._x509 import CheckedCSR, CSRError, check_csr

__all__ = ["CAService", "Issuance", "Refused"]

log = logging.getLogger(__name__)

PROOF_WINDOW = 300.0
"""How far a renewal's timestamp may be from the CA's clock (seconds)."""


def workload_id(trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
    """The workload's SPIFFE ID; one path segment each (``a/b`` is not a service account)."""
    sid = SpiffeId.for_workload(trust_domain, namespace, service_account)
    if (sid.namespace, sid.service_account) != (namespace, service_account):
        raise InvalidSpiffeId(
            f"namespace {namespace!r} / service account {service_account!r}: each must be one "
            "path segment (letters, digits, '.', '-', '_')"
        )
    return sid


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class Issuance(NamedTuple):
    """A signed leaf waiting for its ledger entry to be committed."""

    issued: Issued
    entry: Entry


_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def _first_der(chain: str) -> bytes:
    """The DER of the first certificate of a PEM chain (``ValueError`` if there is none)."""
    begin = chain.index(_PEM_BEGIN) + len(_PEM_BEGIN)
    return base64.b64decode(chain[begin : chain.index(_PEM_END, begin)])


class CAService:
    def __init__(self, ca: CertificateAuthority, tokens: JoinTokens, leaf_ttl: float) -> None:
        self.ca = ca
        self.tokens = tokens
        self.leaf_ttl = dt.timedelta(seconds=leaf_ttl)
        self.refusals: Counter[str] = Counter()

    def _refuse(self, status: int, reason: str, message: str, who: str = "") -> Refused:
        self.refusals[reason] += 1
        log.warning("CA: refused %s(%s): %s", f"{who} " if who else "", reason, message)
        return Refused(status, reason, message)

    def _now(self) -> float:
        return self.ca.clock().timestamp()

    # -- tokens -----------------------------------------------------------------------------

    def make_token(self, namespace: str, service_account: str, ttl: float) -> dict[str, Any]:
        try:
            sid = workload_id(self.ca.trust_domain, namespace, service_account)
        except InvalidSpiffeId as exc:
            raise Refused(400, "bad_identity", f"namespace/serviceAccount: {exc}") from None
        try:
            pin = spki_pin(self.ca.state.current.root)
            token, text = self.tokens.make(str(sid), ttl, self._now(), pin)
        except ValueError as exc:
            raise Refused(400, "bad_ttl", str(exc)) from None
        log.info("CA: join token for %s, valid %.0fs", sid, ttl)
        expires = dt.datetime.fromtimestamp(token.expires, dt.UTC).isoformat()
        return {"token": text, "spiffeId": str(sid), "expires": expires}

    # -- certificates -----------------------------------------------------------------------

    def prepare(self, body: Any) -> Issuance:
        """Check a certificate request (a first certificate: token; a renewal: proof) and
        sign its leaf; nothing is written. :class:`Refused` if it does not pass."""
        if not isinstance(body, dict) or not isinstance(body.get("csr"), str):
            raise self._refuse(400, "malformed", "expected a JSON object with 'csr' (PEM)")
        try:
            csr = check_csr(body["csr"])
        except CSRError as exc:
            raise self._refuse(400, "bad_csr", str(exc)) from None
        now = self.ca.clock()
        try:
            self.ca.check_usable(now)  # before a token is spent
        except CAExpired as exc:
            raise self._refuse(503, "ca_expired", str(exc)) from None
        if isinstance(body.get("token"), str):
            return self._first(body, csr, now)
        if isinstance(body.get("renewal"), dict):
            return self._renew(body["renewal"], csr, now)
        raise self._refuse(
            400,
            "malformed",
            "expected 'token' (first certificate) or 'renewal' (chain, timestamp, signature)",
        )

    def answer(self, issuance: Issuance, kept: bool) -> bytes:
        """The answer to a request whose entry was committed (``kept``) or refused
        because its token was used before (``kept`` false: :class:`Refused`).

        The answer is the compact JSON object ``{spiffeId, chain, bundle, serial,
        notBefore, notAfter}``, byte for byte what ``json.dumps`` writes of it, put
        together here: PEM holds no character that JSON escapes but the line feed.
        """
        if not kept:
            raise self._refuse(
                403,
                "token_reused",
                "the join token was already used (tokens are single use)",
                "join token",
            )
        issued = issuance.issued
        self.ca.count(issued)
        signed = issued.signed
        return b"".join((
            b'{"spiffeId": ', json.dumps(issued.spiffe_id).encode("ascii"),
            b', "chain": "', issued.chain_pem.replace(b"\n", b"\\n"),
            b'", "bundle": "', issued.bundle_pem.replace(b"\n", b"\\n"),
            b'", "serial": "', format(signed.serial, "x").encode("ascii"),
            b'", "notBefore": "', signed.not_before.isoformat().encode("ascii"),
            b'", "notAfter": "', signed.not_after.isoformat().encode("ascii"), b'"}',
        ))  # fmt: skip

    def _first(self, body: dict[str, Any], csr: CheckedCSR, now: dt.datetime) -> Issuance:
        claimed = {k: str(body[k]) for k in ("namespace", "serviceAccount") if body.get(k)}
        try:
            token = self.tokens.check(body["token"], now.timestamp(), claimed)
        except TokenRefused as exc:
            status = 403 if exc.reason in ("wrong_identity", "expired") else 401
            raise self._refuse(status, f"token_{exc.reason}", str(exc), "join token") from None
        issued = self.ca.sign(csr, token.subject, self.leaf_ttl, now)
        return Issuance(issued, issued.entry((token.id, token.expires)))

    def _renew(self, proof: dict[str, Any], csr: CheckedCSR, when: dt.datetime) -> Issuance:
        try:
            der = _first_der(str(proof["chain"]))
            leaf = x509.load_der_x509_certificate(der)
            timestamp = int(proof["timestamp"])
            signature = str(proof["signature"])
        except (KeyError, ValueError, TypeError, UnicodeEncodeError):
            raise self._refuse(
                400,
                "malformed",
                "renewal: expected 'chain' (PEM), "
                "'timestamp' (Unix seconds) and 'signature' (base64)",
            ) from None
        now = when.timestamp()
        record = self.ca.recorded(leaf, hashlib.sha256(der).hexdigest())
        if record is None:
            if self.ca.issuer_of(leaf) is None:
                raise self._refuse(
                    401,
                    "renewal_foreign_cert",
                    "renewal: the certificate was not issued by this CA",
                )
            raise self._refuse(
                401, "renewal_unknown_cert", "renewal: this CA has no record of the certificate"
            )
        if now >= record.not_after:
            raise self._refuse(
                403,
                "renewal_expired_cert",
                "renewal: the certificate expired "
                "at " + leaf.not_valid_after_utc.isoformat() + "; a new join token is needed",
            )
        if abs(now - timestamp) > PROOF_WINDOW:
            raise self._refuse(
                401,
                "renewal_stale_proof",
                f"renewal: the timestamp is "
                f"{now - timestamp:.0f}s off the CA's clock "
                f"(at most {PROOF_WINDOW:.0f}s)",
            )
        if not verify_renewal(leaf, csr.csr, timestamp, signature):
            raise self._refuse(
                401,
                "renewal_bad_signature",
                "renewal: the signature does not verify with the certificate's key",
            )
        issued = self.ca.sign(csr, record.identity, self.leaf_ttl, when, renewal=True)
        return Issuance(issued, issued.entry())

    # -- status and rotation ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out = self.ca.status()
        out["leafTTLSeconds"] = self.leaf_ttl.total_seconds()
        out["refusals"] = dict(self.refusals)
        return out

    def rotate(self) -> dict[str, Any]:
        try:
            self.ca.rotate()
        except RotationRefused as exc:
            raise Refused(409, "rotation_refused", str(exc)) from None
        return self.status()
