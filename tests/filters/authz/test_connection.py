"""authorization on tcp listeners: a policy applied to a connection, with Istio's reading
of HTTP-only fields (ALLOW drops what needs HTTP, DENY ignores the HTTP fields)."""

from __future__ import annotations

from typing import Any

from plait.filters.authz import AUTHORIZATION, parse_authz
from plait.sdk import ConnectionContext, PeerIdentity

CLIENT = "spiffe://plait.local/ns/shop/sa/client"
OTHER = "spiffe://plait.local/ns/shop/sa/other"


def decide(raw: dict[str, Any], spiffe: str | None) -> str | None:
    conn = ConnectionContext(
        peer_address=("127.0.0.1", 1),
        local_address=("127.0.0.1", 2),
        listener="in",
        tls=spiffe is not None,
        peer_identity=PeerIdentity(spiffe) if spiffe else None,
    )
    assert AUTHORIZATION.connection is not None
    return AUTHORIZATION.connection(parse_authz(raw)).on_connection(conn)


def policy(action: str, *rules: dict[str, Any], name: str = "shop/p") -> dict[str, Any]:
    return {"policies": [{"name": name, "action": action, "rules": list(rules)}]}


def test_allow_by_principal_and_namespace() -> None:
    allow = policy("ALLOW", {"from": [{"principals": ["plait.local/ns/shop/sa/client"]}]})
    assert decide(allow, CLIENT) is None
    assert decide(allow, OTHER) == "no authorization policy allows"
    assert decide(allow, None) == "no authorization policy allows"  # plaintext: no identity
    by_ns = policy("ALLOW", {"from": [{"namespaces": ["shop"]}]})
    assert decide(by_ns, OTHER) is None
    assert decide(by_ns, "spiffe://plait.local/ns/web/sa/client") is not None


def test_an_allow_rule_that_needs_http_matches_no_connection() -> None:
    only_http = policy("ALLOW", {"from": [{"principals": ["*"]}], "to": [{"paths": ["/a"]}]})
    assert decide(only_http, CLIENT) == "no authorization policy allows"
    # a policy's other rules still apply
    two = policy("ALLOW", {"to": [{"paths": ["/a"]}]}, {"from": [{"principals": [CLIENT]}]})
    assert decide(two, CLIENT) is None
    assert decide(two, OTHER) == "no authorization policy allows"


def test_deny_ignores_http_fields_and_overrides_allow() -> None:
    raw = {
        "policies": [
            {"name": "shop/allow-all", "action": "ALLOW", "rules": [{}]},
            {"name": "shop/deny-other", "action": "DENY",
             "rules": [{"from": [{"principals": [OTHER]}], "to": [{"paths": ["/admin*"]}]}]},
        ]
    }  # fmt: skip
    assert decide(raw, CLIENT) is None
    # on a TCP port the path cannot be known: the DENY applies to every connection of OTHER
    assert decide(raw, OTHER) == "denied by authorization policy shop/deny-other"


def test_no_policy_rules_means_an_allow_that_matches_nothing() -> None:
    assert decide(policy("ALLOW"), CLIENT) == "no authorization policy allows"
    assert decide({"policies": []}, None) is None
