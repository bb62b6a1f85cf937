"""Root rotation: leaves from before and after it verify each other in real TLS handshakes.

The peers use the sidecar's own :class:`CertStore` contexts; the "old" peer keeps the
bundle it got before the rotation (it has not renewed yet), the "new" one has the bundle
with both roots. The rotation ends only when the CA's clock passes the last old leaf.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plait.core.identity import CertStore, peer_spiffe_id
from plait.core.identity.proof import sign_renewal

from .conftest import CAServer, key_pem, make_csr


def _identity(server: CAServer, sa: str) -> tuple[CertStore, dict[str, Any]]:
    key, csr = make_csr()
    status, out = server.certificate({"token": server.token("shop", sa), "csr": csr})
    assert status == 200, out
    store = CertStore()
    store.update(
        chain_pem=out["chain"].encode(), key_pem=key_pem(key), bundle_pem=out["bundle"].encode()
    )
    return store, out


def _handshake(server_side: CertStore, client_side: CertStore) -> tuple[str, str]:
    """One mTLS handshake on loopback: ``(id the client saw, id the server saw)``."""
    seen: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]

        def serve() -> None:
            conn, _ = lsock.accept()
            try:
                with server_side.listener_context().wrap_socket(conn, server_side=True) as tls:
                    seen["server"] = str(peer_spiffe_id(tls))
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen["server_error"] = exc

        t = threading.Thread(target=serve)
        t.start()
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with client_side.client_context().wrap_socket(raw) as tls:
                seen["client"] = str(peer_spiffe_id(tls))
                assert tls.recv(2) == b"ok"
        finally:
            t.join(5)
    assert "server_error" not in seen, seen["server_error"]
    return seen["client"], seen["server"]


def test_leaves_before_and_after_a_rotation_verify_each_other(server: CAServer) -> None:
    old, old_out = _identity(server, "old")
    assert len(x509.load_pem_x509_certificates(old_out["bundle"].encode())) == 1

    status, _, body = server.request("POST", "/api/v1/ca/rotate", {})
    # the old leaf, and the control plane's own serving certificate (a leaf of its CA)
    assert status == 200 and body["phase"] == "rotating" and body["leavesOnOldRoot"] == 2, body
    new, new_out = _identity(server, "new")
    chain = x509.load_pem_x509_certificates(new_out["chain"].encode())
    bundle = x509.load_pem_x509_certificates(new_out["bundle"].encode())
    assert len(chain) == 3 and len(bundle) == 2  # leaf, new intermediate, cross-signed root

    # The old peer still trusts only the old root: it verifies the new leaf through the cross.
    assert _handshake(old, new) == (
        "spiffe://plait.local/ns/shop/sa/old",
        "spiffe://plait.local/ns/shop/sa/new",
    )
    assert _handshake(new, old) == (
        "spiffe://plait.local/ns/shop/sa/new",
        "spiffe://plait.local/ns/shop/sa/old",
    )
    # A peer that trusts only the new root verifies the new leaf, and refuses the old one.
    new_root_only = CertStore()
    key, csr = make_csr()
    _, out = server.certificate({"token": server.token("shop", "third"), "csr": csr})
    new_root_pem = bundle[0].public_bytes(serialization.Encoding.PEM)
    new_root_only.update(
        chain_pem=out["chain"].encode(), key_pem=key_pem(key), bundle_pem=new_root_pem
    )
    assert _handshake(new_root_only, new)[1] == "spiffe://plait.local/ns/shop/sa/new"
    with pytest.raises(ssl.SSLError):
        _handshake(new_root_only, old)


def test_old_root_is_dropped_only_after_the_old_leaves_expired(server: CAServer) -> None:
    _identity(server, "a")
    server.clock.advance(1200)
    _, last_old = _identity(server, "b")  # the last leaf on the old root
    server.request("POST", "/api/v1/ca/rotate", {})
    status, _, again = server.request("POST", "/api/v1/ca/rotate", {})
    assert status == 409 and again["reason"] == "rotation_refused", again
    assert "3 leaves still on the old root" in again["error"]  # with the serving certificate

    server.clock.advance(3601 - 1200)  # "a" has expired, "b" has not
    st = server.status()
    assert (st["phase"], st["leavesOnOldRoot"]) == ("rotating", 1)
    assert st["oldRootDroppableAfter"] == last_old["notAfter"]
    _, out = _identity(server, "c")
    assert len(x509.load_pem_x509_certificates(out["bundle"].encode())) == 2

    server.clock.advance(1201)  # "b" has expired too
    st = server.status()
    assert st["phase"] == "stable" and [r["role"] for r in st["roots"]] == ["current"]
    _, out = _identity(server, "d")
    bundle = x509.load_pem_x509_certificates(out["bundle"].encode())
    assert [c.subject for c in bundle] == [
        x509.load_pem_x509_certificates(out["chain"].encode())[1].issuer
    ]
    assert len(x509.load_pem_x509_certificates(out["chain"].encode())) == 2  # no cross any more


def test_an_old_leaf_renews_onto_the_new_chain(server: CAServer) -> None:
    key, csr = make_csr()
    _, old = server.certificate({"token": server.token("shop", "cart"), "csr": csr})
    server.request("POST", "/api/v1/ca/rotate", {})
    _, new_csr = make_csr()
    now = int(server.clock().timestamp())
    signature = sign_renewal(key, x509.load_pem_x509_csr(new_csr.encode()), now)
    proof = {"chain": old["chain"], "timestamp": now, "signature": signature}
    status, out = server.certificate({"csr": new_csr, "renewal": proof})
    assert status == 200 and out["spiffeId"] == old["spiffeId"], out
    old_chain = x509.load_pem_x509_certificates(old["chain"].encode())
    new_chain = x509.load_pem_x509_certificates(out["chain"].encode())
    assert len(new_chain) == 3 and new_chain[1] != old_chain[1]
    new_chain[0].verify_directly_issued_by(new_chain[1])  # signed by the new intermediate
    assert new_chain[2].issuer == old_chain[1].issuer  # the cross-signed root, by the old root
