"""The CA as a sidecar meets it: real HTTP on loopback, certificates checked with cryptography."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plait.controlplane.ca import CAFileError, Provided, open_ca
from plait.controlplane.ca._x509 import ca_cert, pem
from tests.support.pki import Authority, key_pem

from .conftest import CAServer, ca_server, make_csr


def _chain(out: dict[str, str]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(out["chain"].encode())


def test_first_start_makes_root_and_intermediate_with_private_keys_0600(server: CAServer) -> None:
    ca_dir = server.data_dir / "ca"
    keys = sorted(ca_dir.glob("gen-*/*.key"))
    assert [k.name for k in keys] == ["intermediate.key", "root.key"]
    for k in [*keys, ca_dir / "token-key", ca_dir / "ledger.db"]:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
    root = x509.load_pem_x509_certificate(next(ca_dir.glob("gen-*/root.pem")).read_bytes())
    inter = x509.load_pem_x509_certificate(next(ca_dir.glob("gen-*/intermediate.pem")).read_bytes())
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 2  # room for a cross-signed successor root
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    inter.verify_directly_issued_by(root)


def test_a_world_readable_key_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data"):
        pass
    key = next((tmp_path / "data" / "ca").glob("gen-*/intermediate.key"))
    os.chmod(key, 0o644)
    with pytest.raises(CAFileError) as err:
        open_ca(tmp_path / "data")
    assert str(key) in str(err.value) and f"chmod 600 {key}" in str(err.value)


def test_leaf_has_the_token_identity_not_the_csrs(server: CAServer) -> None:
    key, csr = make_csr(uri="spiffe://plait.local/ns/kube-system/sa/admin")
    status, out = server.certificate({"token": server.token("shop", "cart"), "csr": csr})
    assert status == 200, out
    leaf, inter = _chain(out)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://plait.local/ns/shop/sa/cart"
    ]
    assert out["spiffeId"] == "spiffe://plait.local/ns/shop/sa/cart"
    assert leaf.public_key() == key.public_key()
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    now = server.clock()
    assert now - dt.timedelta(minutes=5) < leaf.not_valid_before_utc < now
    assert leaf.not_valid_after_utc == (now + dt.timedelta(hours=1)).replace(microsecond=0)
    leaf.verify_directly_issued_by(inter)
    # the answer's fields and PEM are the certificate's own
    assert out["serial"] == format(leaf.serial_number, "x")
    assert out["notBefore"] == leaf.not_valid_before_utc.isoformat()
    assert out["notAfter"] == leaf.not_valid_after_utc.isoformat()
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter)]
    assert out["chain"].encode() == b"".join(pems)
    root = x509.load_pem_x509_certificates(out["bundle"].encode())
    assert len(root) == 1
    inter.verify_directly_issued_by(root[0])


def test_rsa_key_gets_key_encipherment_and_short_ttl_is_honoured(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data", cert_ttl=60) as srv:
        _, csr = make_csr(rsa.generate_private_key(65537, 2048))
        status, out = srv.certificate({"token": srv.token(), "csr": csr})
        assert status == 200, out
        leaf = _chain(out)[0]
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
        assert leaf.not_valid_after_utc - srv.clock().replace(microsecond=0) == dt.timedelta(
            seconds=60
        )


def test_cert_ttl_below_a_minute_and_a_bad_trust_domain_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 60"):
        open_ca(tmp_path, leaf_ttl=30)
    with pytest.raises(ValueError, match=r"trust domain 'Mesh\.Example'"):
        open_ca(tmp_path, trust_domain="Mesh.Example")


def _tampered_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-8] ^= 0x01  # inside the signature's s value: still parses, no longer verifies
    csr2 = x509.load_der_x509_csr(bytes(der))
    return csr2.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("csr", "words"),
    [
        (_tampered_csr, "signature does not verify"),
        (lambda: make_csr(rsa.generate_private_key(65537, 1024))[1], "at least 2048"),
        (lambda: make_csr(ec.generate_private_key(ec.SECP521R1()))[1], "P-256 or P-384"),
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nxx\n", "not a PEM"),
    ],
)
def test_bad_csrs_are_refused_with_400_and_do_not_consume_the_token(
    server: CAServer, csr: object, words: str
) -> None:
    token = server.token()
    status, out = server.certificate({"token": token, "csr": csr()})  # type: ignore[operator]
    assert status == 400 and out["reason"] == "bad_csr" and words in out["error"], out
    status, out = server.certificate({"token": token, "csr": make_csr()[1]})
    assert status == 200, out


def test_malformed_requests_get_400(server: CAServer) -> None:
    status, _, out = server.request("POST", "/api/v1/certificates", b"{not json", admin=False)
    assert status == 400 and "not JSON" in out["error"]
    status, out = server.certificate({"csr": make_csr()[1]})
    assert status == 400 and out["reason"] == "malformed"
    status, out = server.certificate(["csr"])
    assert status == 400 and out["reason"] == "malformed"
    status, out = server.certificate({"csr": make_csr()[1], "renewal": {"chain": "x"}})
    assert status == 400 and out["reason"] == "malformed" and "renewal" in out["error"]


def test_token_and_status_endpoints_need_the_admin_token(server: CAServer) -> None:
    body = {"namespace": "default", "serviceAccount": "web"}
    assert server.request("POST", "/api/v1/tokens", body, admin=False)[0] == 401
    assert server.request("GET", "/api/v1/ca", admin=False)[0] == 401
    assert server.request("POST", "/api/v1/ca/rotate", {}, admin=False)[0] == 401
    status, _, out = server.request("POST", "/api/v1/tokens", {**body, "serviceAccount": "a/b"})
    assert status == 400 and out["reason"] == "bad_identity"


def test_operator_intermediate_issues_and_rotation_needs_the_root_key(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    root = Authority.create("operator root")
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = ca_cert(key=inter_key, common_name="operator intermediate", trust_domain="plait.local",
                    now=now, lifetime=dt.timedelta(days=30), path_length=0,
                    issuer=(root.cert, root.key))  # fmt: skip
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "inter.pem").write_bytes(pem(inter))
    key_file = tmp_path / "inter.key"
    key_file.write_bytes(key_pem(inter_key))
    key_file.chmod(0o600)
    stranger = Authority.create("stranger")
    (tmp_path / "stranger.pem").write_bytes(stranger.pem)
    with pytest.raises(CAFileError, match="not issued by"):
        open_ca(tmp_path / "bad", provided=Provided(tmp_path / "stranger.pem", None,
                                                    tmp_path / "inter.pem", key_file))  # fmt: skip
    provided = Provided(tmp_path / "root.pem", None, tmp_path / "inter.pem", key_file)
    with ca_server(tmp_path / "data", ca_files=provided) as srv:
        status, out = srv.certificate({"token": srv.token(), "csr": make_csr()[1]})
        assert status == 200, out
        leaf, got_inter = _chain(out)
        assert got_inter == inter
        leaf.verify_directly_issued_by(inter)
        assert x509.load_pem_x509_certificates(out["bundle"].encode()) == [root.cert]
        status, _, body = srv.request("POST", "/api/v1/ca/rotate", {})
        assert status == 409 and "root key is not in the data directory" in body["error"]
        assert not list((tmp_path / "data" / "ca").glob("gen-*/root.key"))


def test_an_expired_intermediate_refuses_with_503_keeps_the_token_and_rotation_mends(
    server: CAServer,
) -> None:
    server.clock.advance(335 * 86400)
    assert "run `plait ca rotate`" in server.status()["warnings"][0]
    server.clock.advance(31 * 86400)
    token = server.token()
    status, out = server.certificate({"token": token, "csr": make_csr()[1]})
    assert status == 503 and out["reason"] == "ca_expired" and "plait ca rotate" in out["error"]
    assert server.request("POST", "/api/v1/ca/rotate", {})[0] == 200
    status, out = server.certificate({"token": token, "csr": make_csr()[1]})
    assert status == 200, out
    assert server.status()["warnings"] == []


def test_two_control_planes_starting_at_once_share_one_ca(tmp_path: Path) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        cas = list(pool.map(lambda _: open_ca(tmp_path), range(4)))
    roots = {svc.ca.state.current.fingerprint for svc in cas}
    assert len(roots) == 1
    assert len(list((tmp_path / "ca").glob("gen-*"))) == 1
    for svc in cas:
        svc.ca.close()
