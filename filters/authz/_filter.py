"""``authorization``: decide each request by the caller's verified identity.

Order (Istio's): AUDIT policies that match are logged (``plait.filters.authz`` logger,
info) and counted (``plait_authz_audit_total{policy}`` on ``/metrics``); then a matching
DENY policy answers 403; then, if any ALLOW policy applies, a request that matches none
of them is answered 403; otherwise it passes. No ALLOW policy means allow. The 403
carries ``x-plait-denied``: the ``namespace/name`` of the DENY policy that matched, or
``no-allow-match``; its failure reason (``x-plait-reason``, the access log,
``plait_requests_total{reason}``) says which of the two it was.

The caller's principal is the SPIFFE ID the listener verified in the mTLS handshake
(``ConnectionContext.peer_identity``), never an address or a header. Replies are built
once per config; the per-request work is a few set lookups and ``startswith`` calls.
"""

from __future__ import annotations

import logging

from plait.filters._paths import normalized
from plait.sdk import FilterResult, Headers, LocalReply, PassThroughFilter, StreamContext, metrics

from ._config import AuthzConfig, Request

__all__ = ["DENIED_HEADER", "DENY_REASON", "NO_ALLOW_REASON", "Authorization"]

log = logging.getLogger("plait.filters.authz")

DENIED_HEADER = "x-plait-denied"
DENY_REASON = "denied by authorization policy"
NO_ALLOW_REASON = "no authorization policy allows"
_BODY = b"RBAC: access denied\n"
_TEXT = ("content-type", "text/plain; charset=utf-8")
AUDITED = metrics.counter(
    "plait_authz_audit_total", "Requests matched by an AUDIT authorization policy", ("policy",)
)


def _reply(value: str, reason: str) -> LocalReply:
    return LocalReply(403, _BODY, (_TEXT, (DENIED_HEADER, value)), reason=reason)


class Authorization(PassThroughFilter):
    """Stateless: one instance may serve every stream."""

    __slots__ = ("_config", "_deny", "_no_allow")

    def __init__(self, config: AuthzConfig) -> None:
        self._config = config
        self._deny = {p.name: _reply(p.name, DENY_REASON) for p in config.deny}
        self._no_allow = _reply("no-allow-match", NO_ALLOW_REASON)

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        cfg = self._config
        peer = ctx.connection.peer_identity
        spiffe = peer.spiffe_id if peer is not None else None
        principal = spiffe.removeprefix("spiffe://") if spiffe else None
        namespace = peer.namespace if peer is not None and spiffe else None
        req = Request(principal, namespace, normalized(ctx.request.path_only), ctx.request.method)
        for p in cfg.audit:
            if p.matches(req):
                log.info(
                    "audit %s: %s %s from %s", p.name, req.method, req.path, spiffe or "no identity"
                )
                AUDITED.inc(p.name)
        for p in cfg.deny:
            if p.matches(req):
                log.debug("denied by %s: %s %s from %s", p.name, req.method, req.path, spiffe)
                return self._deny[p.name]
        if cfg.allow and not any(p.matches(req) for p in cfg.allow):
            log.debug("no ALLOW policy matched: %s %s from %s", req.method, req.path, spiffe)
            return self._no_allow
        return None
