"""The CA's endpoints (docs/identity.md).

* ``POST /api/v1/certificates`` needs no admin token: the body carries its own proof
  (a join token, or a renewal proof by the current leaf's key) and a CSR.
* ``POST /api/v1/tokens`` (``{"namespace", "serviceAccount", "ttl"}``), ``GET /api/v1/ca``
  and ``POST /api/v1/ca/rotate`` need the admin token (checked by the caller).

A refusal is JSON ``{"error", "reason", "details"}`` with its status (400 malformed,
401 a credential that does not verify, 403 one that may not have this certificate,
409 a rotation that cannot start, 503 a ledger that cannot be written). A certificate
request is checked and signed first (``CAService.prepare``); requests arriving together
then share one ledger transaction (``GroupCommit``), and each answer leaves only after
the commit holding its record.
"""

from __future__ import annotations

import json
from typing import Any

from plait.controlplane.ca import CAService, GroupCommit, LedgerUnavailable, Refused

from ._http import HttpError, Request, Response

__all__ = ["BUNDLE_PATH", "CERTIFICATES_PATH", "CAEndpoints"]

CERTIFICATES_PATH = "/api/v1/certificates"
BUNDLE_PATH = "/api/v1/ca/bundle"
_BODY_LIMIT = 64 * 1024
DEFAULT_TOKEN_TTL = 600.0
_JSON = (("content-type", "application/json"),)


def _refusal(exc: Refused) -> HttpError:
    return HttpError(exc.status, exc.message, reason=exc.reason)


async def _json(req: Request) -> Any:
    try:
        return json.loads(await req.body(_BODY_LIMIT))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not JSON: {exc}") from None


class CAEndpoints:
    def __init__(self, service: CAService) -> None:
        self.service = service
        ca = service.ca
        self.group = GroupCommit(ca.ledger, lambda: ca.clock().timestamp())
        """Requests arriving together share one ledger transaction (``ca/_group.py``)."""

    async def certificates(self, req: Request) -> Response:
        body = await _json(req)
        try:
            issuance = self.service.prepare(body)
            answer = self.service.answer(issuance, await self.group.record(issuance.entry))
            return Response(status=200, body=answer, headers=_JSON)  # compact JSON, made there
        except Refused as exc:
            raise _refusal(exc) from None
        except LedgerUnavailable as exc:
            raise HttpError(503, str(exc), reason="ledger_unavailable") from None

    async def admin(self, req: Request, parts: list[str]) -> Response | None:
        """The admin endpoint for ``parts`` (under /api/v1/), or ``None`` if not one."""
        try:
            if parts == ["tokens"]:
                _only(req, "POST")
                body = await _json(req)
                if not isinstance(body, dict):
                    raise HttpError(400, "expected a JSON object {namespace, serviceAccount, ttl}")
                ttl = body.get("ttl", DEFAULT_TOKEN_TTL)
                if not isinstance(ttl, int | float) or isinstance(ttl, bool):
                    raise HttpError(400, f"ttl: expected seconds, got {ttl!r}")
                made = self.service.make_token(
                    str(body.get("namespace") or "default"),
                    str(body.get("serviceAccount") or "default"),
                    float(ttl),
                )
                return Response(status=201, body=made)
            if parts == ["ca"]:
                _only(req, "GET")
                return Response(status=200, body=self.service.status())
            if parts == ["ca", "rotate"]:
                _only(req, "POST")
                return Response(status=200, body=self.service.rotate())
        except Refused as exc:
            raise _refusal(exc) from None
        return None


def _only(req: Request, method: str) -> None:
    if req.method != method:
        raise HttpError(
            405,
            f"method {req.method} not allowed on {req.path} (allowed: {method})",
            headers=[("allow", method)],
        )
