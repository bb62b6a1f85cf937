"""authorization filter: Istio's matching and decision order, driven through plait.sdk.testing."""

from __future__ import annotations

from typing import Any

import pytest

from plait.filters.authz import AUTHORIZATION, Authorization, parse_authz
from plait.sdk import ConfigError, ConnectionContext, LocalReply, PeerIdentity
from plait.sdk.testing import check_filter, make_context, make_request

CLIENT = "spiffe://plait.local/ns/shop/sa/client"


def decide(raw: dict[str, Any], spiffe: str | None, path: str = "/", method: str = "GET") -> Any:
    conn = ConnectionContext(
        peer_address=("127.0.0.1", 1),
        local_address=("127.0.0.1", 2),
        tls=spiffe is not None,
        peer_identity=PeerIdentity(spiffe) if spiffe else None,
    )
    ctx = make_context(make_request(method, path), connection=conn)
    return Authorization(parse_authz(raw)).on_request_headers(ctx, ctx.request.headers, True)


def policy(action: str, *rules: dict[str, Any], name: str = "shop/p") -> dict[str, Any]:
    return {"policies": [{"name": name, "action": action, "rules": list(rules)}]}


def src(**fields: list[str]) -> dict[str, Any]:
    return {"from": [fields]}


def op(**fields: list[str]) -> dict[str, Any]:
    return {"to": [fields]}


def allowed(result: Any) -> bool:
    return not isinstance(result, LocalReply)


def test_the_spec_passes_the_sdk_checks() -> None:
    check_filter(AUTHORIZATION, policy("ALLOW", src(principals=["*"])))


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("plait.local/ns/shop/sa/client", True),
        (CLIENT, True),  # the full spiffe:// spelling
        ("plait.local/ns/shop/*", True),
        ("*/sa/client", True),
        ("*", True),
        ("plait.local/ns/other/sa/client", False),
        ("plait.local/ns/shop/sa/clien", False),
    ],
)
def test_principal_patterns(pattern: str, ok: bool) -> None:
    assert allowed(decide(policy("ALLOW", src(principals=[pattern])), CLIENT)) is ok


def test_no_identity_matches_no_principal_and_every_not_principal() -> None:
    assert not allowed(decide(policy("ALLOW", src(principals=["*"])), None))
    assert not allowed(decide(policy("ALLOW", src(namespaces=["*"])), None))
    # Istio's "deny requests without an identity": DENY notPrincipals ["*"].
    deny_plain = policy("DENY", src(notPrincipals=["*"]))
    assert not allowed(decide(deny_plain, None))
    assert allowed(decide(deny_plain, CLIENT))


def test_namespaces_and_not_namespaces() -> None:
    assert allowed(decide(policy("ALLOW", src(namespaces=["shop"])), CLIENT))
    assert not allowed(decide(policy("ALLOW", src(namespaces=["billing"])), CLIENT))
    assert not allowed(decide(policy("ALLOW", src(notNamespaces=["shop"])), CLIENT))


def test_operations_paths_methods_and_their_negations() -> None:
    raw = policy("ALLOW", op(paths=["/api/*", "*.json", "/health"], notMethods=["DELETE"]))
    assert allowed(decide(raw, CLIENT, "/api/x"))
    assert allowed(decide(raw, CLIENT, "/data.json?x=1"))
    assert allowed(decide(raw, CLIENT, "/health"))
    assert not allowed(decide(raw, CLIENT, "/healthz"))
    assert not allowed(decide(raw, CLIENT, "/api/x", "DELETE"))
    assert not allowed(decide(policy("ALLOW", op(notPaths=["/api/*"])), CLIENT, "/api/x"))
    assert not allowed(decide(raw, CLIENT, "/x/../admin"))
    assert allowed(decide(raw, CLIENT, "/x/../api/y"))  # normalized first


def test_a_rule_needs_its_source_and_its_operation() -> None:
    raw = policy("ALLOW", {**src(principals=[CLIENT]), **op(methods=["GET"])})
    assert allowed(decide(raw, CLIENT, "/", "GET"))
    assert not allowed(decide(raw, CLIENT, "/", "POST"))
    assert not allowed(decide(raw, "spiffe://plait.local/ns/shop/sa/x", "/", "GET"))


def test_deny_first_then_allow_and_the_reply_says_which() -> None:
    raw = {
        "policies": [
            {"name": "shop/allow", "action": "ALLOW", "rules": [src(principals=["*"])]},
            {"name": "shop/no-admin", "action": "DENY", "rules": [op(paths=["/admin*"])]},
        ]
    }
    deny = decide(raw, CLIENT, "/admin")
    assert isinstance(deny, LocalReply) and deny.status == 403
    assert ("x-plait-denied", "shop/no-admin") in deny.headers
    assert deny.reason == "denied by authorization policy"
    assert allowed(decide(raw, CLIENT, "/shop"))
    no_allow = decide(raw, None, "/shop")
    assert isinstance(no_allow, LocalReply)
    assert ("x-plait-denied", "no-allow-match") in no_allow.headers


def test_no_allow_policy_means_allow_and_an_empty_allow_means_deny_all() -> None:
    assert allowed(decide(policy("DENY", op(paths=["/x"])), None, "/y"))
    assert not allowed(decide(policy("ALLOW"), CLIENT))  # no rules: matches nothing
    assert allowed(decide(policy("ALLOW", {}), None))  # an empty rule matches everything


def test_audit_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", "plait.filters.authz")
    assert allowed(decide(policy("AUDIT", op(paths=["/r/*"]), name="shop/audit"), CLIENT, "/r/1"))
    assert f"audit shop/audit: GET /r/1 from {CLIENT}" in caplog.text


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"policies": [{"name": "a", "action": "MAYBE"}]}, "policies[0].action"),
        (policy("ALLOW", src(principals=["a*b"])), "policies[0].rules[0].from[0].principals[0]"),
        (policy("ALLOW", src(principals=[])), "policies[0].rules[0].from[0].principals"),
        (policy("ALLOW", src(sources=["x"])), "policies[0].rules[0].from[0].sources"),
    ],
)
def test_invalid_config_names_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_authz(raw)
    assert err.value.field == field


def test_configs_compare_by_content() -> None:
    raw = policy("ALLOW", src(principals=[CLIENT]))
    assert parse_authz(raw) == parse_authz(raw)
    assert parse_authz(raw) != parse_authz(policy("ALLOW", src(principals=["x"])))
