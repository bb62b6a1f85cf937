"""``authorization`` on ``tcp`` listeners: decide each connection by the verified identity.

A ``tcp`` listener sees no request, only a connection and, under mTLS, the peer's
SPIFFE ID, so a policy is applied with the fields a connection has (``principals``,
``namespaces`` and their negations). Istio's rule for HTTP-only fields (``paths``,
``methods``) on TCP traffic keeps every reading fail-closed:

* **ALLOW**: a ``to`` clause that names an HTTP-only field cannot match a connection, so
  it is dropped; a rule left with none of its ``to`` clauses matches nothing. An ALLOW
  policy whose every rule needs HTTP thus allows nothing on a TCP port (and, being an
  ALLOW policy, makes everything else denied).
* **DENY** and **AUDIT**: the HTTP-only fields are ignored and the rest applies, so such
  a policy denies (audits) more broadly on a TCP port, never less.

A refused connection is closed before a byte is relayed; it is counted as
``plait_authz_denied_connections_total{policy}`` (``no-allow-match`` when no ALLOW policy
matched) and logged at debug level, as denied requests are (a flood of refused
connections must not flood the log). AUDIT matches add to ``plait_authz_audit_total`` and
are logged at info level, as for requests.
"""

from __future__ import annotations

import logging

from plait.sdk import ConnectionContext, metrics

from ._config import AuthzConfig, Clause, Policy, Request, Rule
from ._filter import AUDITED, DENY_REASON, NO_ALLOW_REASON

__all__ = ["ConnectionAuthorization"]

log = logging.getLogger("plait.filters.authz")

HTTP_ONLY = frozenset({"paths", "notPaths", "methods", "notMethods"})
DENIED = metrics.counter(
    "plait_authz_denied_connections_total",
    "TCP connections closed by an authorization policy",
    ("policy",),
)


def _without_http(clause: Clause) -> Clause:
    return Clause({k: v for k, v in clause.fields.items() if k not in HTTP_ONLY})


def _for_connections(policy: Policy) -> Policy:
    """``policy`` as it applies to a connection (see the module docstring)."""
    rules = []
    for rule in policy.rules:
        operations = rule.operations
        if operations is not None:
            if policy.action == "ALLOW":
                operations = tuple(c for c in operations if not HTTP_ONLY & c.fields.keys())
                if not operations:
                    continue  # needs HTTP to match: matches no connection
            else:
                operations = tuple(_without_http(c) for c in operations)
        rules.append(Rule(rule.sources, operations))  # ``from`` fields all apply to TCP
    return Policy(policy.name, policy.action, tuple(rules))


class ConnectionAuthorization:
    """The connection filter of ``authorization``: one per config snapshot."""

    __slots__ = ("_allow", "_audit", "_deny")

    def __init__(self, config: AuthzConfig) -> None:
        self._deny = tuple(_for_connections(p) for p in config.deny)
        self._allow = tuple(_for_connections(p) for p in config.allow)
        self._audit = tuple(_for_connections(p) for p in config.audit)

    def on_connection(self, conn: ConnectionContext) -> str | None:
        peer = conn.peer_identity
        spiffe = peer.spiffe_id if peer is not None else None
        principal = spiffe.removeprefix("spiffe://") if spiffe else None
        namespace = peer.namespace if peer is not None and spiffe else None
        req = Request(principal, namespace, "", "")
        who = spiffe or "no identity"
        for p in self._audit:
            if p.matches(req):
                log.info("audit %s: tcp connection on %s from %s", p.name, conn.listener, who)
                AUDITED.inc(p.name)
        for p in self._deny:
            if p.matches(req):
                log.debug("denied by %s: tcp connection on %s from %s", p.name, conn.listener, who)
                DENIED.inc(p.name)
                return f"{DENY_REASON} {p.name}"
        if self._allow and not any(p.matches(req) for p in self._allow):
            log.debug("no ALLOW policy matched: tcp connection on %s from %s", conn.listener, who)
            DENIED.inc("no-allow-match")
            return NO_ALLOW_REASON
        return None
