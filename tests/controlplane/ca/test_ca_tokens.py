"""Join tokens and renewals refused from outside: status, reason, log line and count of each."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plait.core.identity.proof import sign_renewal
from tests.support.pki import Authority

from .conftest import CAServer, ca_server, make_csr


def _refused(
    server: CAServer, body: Any, status: int, reason: str, caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    before = server.status()["refusals"].get(reason, 0)
    with caplog.at_level(logging.WARNING, logger="plait.controlplane.ca"):
        got, out = server.certificate(body)
    assert (got, out.get("reason")) == (status, reason), out
    assert server.status()["refusals"][reason] == before + 1
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text
    return dict(out)


def test_expired_token_is_refused(server: CAServer, caplog: pytest.LogCaptureFixture) -> None:
    token = server.token(ttl=60)
    server.clock.advance(61)
    out = _refused(server, {"token": token, "csr": make_csr()[1]}, 403, "token_expired", caplog)
    assert "expired" in out["error"]


def test_token_is_single_use_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ca_server(tmp_path / "data") as srv:
        token = srv.token()
        assert srv.certificate({"token": token, "csr": make_csr()[1]})[0] == 200
        _refused(srv, {"token": token, "csr": make_csr()[1]}, 403, "token_reused", caplog)
        unused = srv.token()
    with ca_server(tmp_path / "data") as srv:
        _refused(srv, {"token": token, "csr": make_csr()[1]}, 403, "token_reused", caplog)
        assert srv.certificate({"token": unused, "csr": make_csr()[1]})[0] == 200


def test_forged_tokens_are_refused(
    tmp_path: Path, server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = server.token()
    head, payload, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    _refused(
        server,
        {"token": f"{head}.{payload}.{flipped}", "csr": make_csr()[1]},
        401,
        "token_forged",
        caplog,
    )
    with ca_server(tmp_path / "other") as other:  # another control plane's genuine token
        foreign = other.token()
    _refused(server, {"token": foreign, "csr": make_csr()[1]}, 401, "token_forged", caplog)
    _refused(server, {"token": "hello", "csr": make_csr()[1]}, 401, "token_malformed", caplog)
    assert server.certificate({"token": token, "csr": make_csr()[1]})[0] == 200


def test_token_presented_for_another_identity_is_refused(
    server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = server.token("shop", "cart")
    body = {"token": token, "csr": make_csr()[1], "namespace": "shop", "serviceAccount": "admin"}
    out = _refused(server, body, 403, "token_wrong_identity", caplog)
    assert "ns/shop/sa/cart" in out["error"] and "serviceAccount admin" in out["error"]
    # Only what is claimed is compared: the right service account, no namespace, passes.
    body = {"token": token, "csr": make_csr()[1], "serviceAccount": "cart"}
    status, out = server.certificate(body)
    assert status == 200 and out["spiffeId"] == "spiffe://plait.local/ns/shop/sa/cart", out


# -- renewal ---------------------------------------------------------------------------------


def _issue(server: CAServer) -> tuple[Any, dict[str, Any]]:
    key, csr = make_csr()
    status, out = server.certificate({"token": server.token("shop", "cart"), "csr": csr})
    assert status == 200, out
    return key, out


def _renewal(key: Any, chain: str, when: float) -> dict[str, Any]:
    _, csr_pem = make_csr()
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    proof = {"chain": chain, "timestamp": int(when), "signature": sign_renewal(key, csr, int(when))}
    return {"csr": csr_pem, "renewal": proof}


def test_renewal_keeps_the_identity_and_gives_a_new_leaf(server: CAServer) -> None:
    key, first = _issue(server)
    server.clock.advance(1800)
    status, out = server.certificate(_renewal(key, first["chain"], server.clock().timestamp()))
    assert status == 200, out
    assert out["spiffeId"] == "spiffe://plait.local/ns/shop/sa/cart"
    assert out["serial"] != first["serial"] and out["notAfter"] > first["notAfter"]
    assert server.status()["issued"]["renewal"] == 1


def test_renewal_with_an_expired_cert_is_refused(
    server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, first = _issue(server)
    server.clock.advance(3601)
    body = _renewal(key, first["chain"], server.clock().timestamp())
    out = _refused(server, body, 403, "renewal_expired_cert", caplog)
    assert "join token" in out["error"]


def test_renewal_with_a_foreign_cert_is_refused(
    server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    chain, key_pem = Authority.create("elsewhere").leaf("spiffe://plait.local/ns/shop/sa/cart")
    key = serialization.load_pem_private_key(key_pem, None)
    body = _renewal(key, chain.decode(), server.clock().timestamp())
    _refused(server, body, 401, "renewal_foreign_cert", caplog)


def test_renewal_signed_by_another_key_or_stale_is_refused(
    server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, first = _issue(server)
    thief = ec.generate_private_key(ec.SECP256R1())
    now = server.clock().timestamp()
    _refused(server, _renewal(thief, first["chain"], now), 401, "renewal_bad_signature", caplog)
    _refused(server, _renewal(key, first["chain"], now - 3600), 401, "renewal_stale_proof", caplog)
    assert server.certificate(_renewal(key, first["chain"], time.time()))[0] == 200
