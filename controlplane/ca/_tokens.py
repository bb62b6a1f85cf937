"""Join tokens: how a new workload proves, once, which identity it may have.

Theory of operation: an operator (``plait workload token``, with the admin token) asks
for a token bound to one SPIFFE ID. The token is
``plait1.<payload>.<mac>``: the payload is base64url JSON ``{"id", "sub", "exp"}``
(a random id, the SPIFFE ID, the expiry in Unix seconds) and the mac is
HMAC-SHA256 of ``plait1.<payload>`` under a 32-byte key kept in
``<data-dir>/ca/token-key`` (mode 0600, made at the first start). Nothing is stored at
issuance; at redemption (:meth:`JoinTokens.check`) the MAC is checked in constant time,
then the expiry (against the CA's clock), then the identity the caller claims (if it
claims one). The token is spent with its certificate: its id goes into the ledger's
``used_tokens`` in the transaction that records the leaf, refused if already there
(``_ledger.py``), so a token is single use across restarts and concurrent requests.
Each refusal has a reason code (``forged``, ``malformed``, ``expired``,
``wrong_identity``; ``reused`` comes from the ledger) that the API returns, logs and
counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plait.sdk import SpiffeId

from ._files import CAFileError, check_private_mode, write_private

__all__ = ["JoinTokens", "TokenRefused", "load_token_key"]

_PREFIX = "plait1"
MAX_TTL = 24 * 3600.0


class TokenRefused(Exception):
    """A join token is refused: ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    subject: str
    expires: float


def load_token_key(path: Path) -> bytes:
    """The HMAC key in ``path``, made (mode 0600) at the first start."""
    try:
        write_private(path, secrets.token_hex(32).encode() + b"\n")
    except FileExistsError:
        check_private_mode(path)
    key = path.read_bytes().strip()
    for _ in range(50):  # another control plane starting at once may still be writing it
        if len(key) >= 32:
            break
        time.sleep(0.02)
        key = path.read_bytes().strip()
    if len(key) < 32:
        raise CAFileError(f"{path}: the join-token key is too short (delete it to make a new one)")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class JoinTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, signed: str) -> str:
        return _b64(hmac.digest(self._key, signed.encode("ascii"), hashlib.sha256))

    def make(
        self, subject: str, ttl: float, now: float, pin: str | None = None
    ) -> tuple[Token, str]:
        """A new token for ``subject`` valid ``ttl`` seconds: ``(Token, text)``.

        ``pin`` (the root's SPKI hash) lets the workload verify the control plane before
        it sends the token (``plait.core.identity.bootstrap``).
        """
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl {ttl:g}s: expected more than 0 and at most {MAX_TTL:g}s")
        token = Token(id=secrets.token_urlsafe(16), subject=subject, expires=now + ttl)
        fields: dict[str, object] = {"id": token.id, "sub": subject, "exp": round(token.expires, 3)}
        if pin is not None:
            fields["pin"] = pin
        payload = json.dumps(fields, separators=(",", ":"))
        signed = f"{_PREFIX}.{_b64(payload.encode())}"
        return token, f"{signed}.{self._mac(signed)}"

    def check(self, text: str, now: float, claimed: Mapping[str, str] | None = None) -> Token:
        """The token's content if it is genuine, unexpired and for ``claimed`` (not consumed).

        ``claimed`` holds what the caller says it is (``namespace``, ``serviceAccount``);
        each part given must be the token's.

        Raises:
            TokenRefused: forged, malformed, expired or for another identity.
        """
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise TokenRefused("malformed", "not a plait join token (expected plait1.<...>.<...>)")
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(signed), parts[2]):
            raise TokenRefused("forged", "the join token's signature does not verify")
        try:
            body = json.loads(_unb64(parts[1]))
            token = Token(id=str(body["id"]), subject=str(body["sub"]), expires=float(body["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenRefused("malformed", "the join token's payload is unreadable") from None
        if now >= token.expires:
            raise TokenRefused("expired", f"the join token expired {now - token.expires:.0f}s ago")
        if claimed:
            sid = SpiffeId.parse(token.subject)
            bound = {"namespace": sid.namespace, "serviceAccount": sid.service_account}
            wrong = [f"{k} {v}" for k, v in claimed.items() if bound.get(k) != v]
            if wrong:
                raise TokenRefused(
                    "wrong_identity",
                    f"the join token is bound to {token.subject}, presented for {', '.join(wrong)}",
                )
        return token
