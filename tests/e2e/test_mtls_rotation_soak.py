"""Certificate rotation under load, end to end: leaves that live 60 s rotating while 36
clients send requests through two mTLS sidecars, and a root rotation in the middle of it.

A rotation is counted from the sidecar's identity agent (each installed certificate is
logged with its serial); the hop is checked to be mTLS by the server sidecar's inbound
connection counter (``transport="mtls"``, STRICT refuses anything else). See
``_rotation.py`` for the mesh and the load.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support import Proc
from tests.support.controlplane import plait, wait_for
from tests.support.mtls import refusals
from tests.support.pki import Authority

from ._rotation import CLIENT, Load, mtls_connections, serials, start_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.soak]


@pytest.mark.timeout(420)  # 4 minutes of load, plus start and stop
def test_leaves_rotate_under_load_without_a_failed_request(
    tmp_path: Path, procs: list[Proc]
) -> None:
    mesh = start_mesh(tmp_path, procs)
    load = Load(mesh.egress).start()
    handshakes = [mtls_connections(mesh.web)]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(30)
            handshakes.append(mtls_connections(mesh.web))
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:20]}"
    assert load.ok > 1000
    for sidecar in (mesh.web, mesh.client):
        installed = serials(sidecar)
        assert len(set(installed)) == len(installed), installed
        assert len(installed) - 1 >= 3, f"{sidecar.log.name}: {installed}"
    # Every hop was mTLS (STRICT: nothing else is served), and every rotation of the client
    # sidecar's certificate brought a new handshake: the connection made with the replaced
    # one took no new request, even the one HTTP/2 connection between the sidecars.
    assert refusals(mesh.web.admin_port, "plaintext") == 0
    rotations = len(serials(mesh.client)) - 1
    assert handshakes[-1] - handshakes[0] >= rotations, (handshakes, rotations)


def _ca(cp: Proc) -> dict[str, object]:
    return dict(json.loads(plait(cp, "ca", "status", "-o", "json").stdout))


def _handshake(port: int, trust: bytes, chain_key: tuple[bytes, bytes], tmp: Path) -> bool:
    """Does an mTLS handshake with the sidecar at ``port`` succeed, trusting only ``trust``?"""
    cert, key = tmp / "probe.pem", tmp / "probe.key"
    cert.write_bytes(chain_key[0])
    key.write_bytes(chain_key[1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=trust.decode())
    ctx.load_cert_chain(str(cert), str(key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
            return tls.recv(12).startswith(b"HTTP/1.1")
    except (ssl.SSLError, OSError):
        return False


class _Issuer(Authority):
    """A CA generation's intermediate: its leaves' chains carry the intermediate too."""

    def leaf(self, spiffe_id: str, **kw: Any) -> tuple[bytes, bytes]:
        chain, key = super().leaf(spiffe_id, **kw)
        return chain + self.pem, key


def _generation(cp: Proc, index: int) -> tuple[bytes, Authority]:
    """Root PEM and intermediate (as an issuer) of the control plane's CA generation ``index``."""
    assert cp.config is not None
    (gen,) = (cp.config / "ca").glob(f"gen-{index}-*")
    key = serialization.load_pem_private_key((gen / "intermediate.key").read_bytes(), None)
    inter = x509.load_pem_x509_certificate((gen / "intermediate.pem").read_bytes())
    return (gen / "root.pem").read_bytes(), _Issuer(key, inter)  # type: ignore[arg-type]


@pytest.mark.timeout(300)  # up to 10 + 120 + 60 s of load, plus start and stop
def test_root_rotates_under_load_and_the_old_root_is_dropped(
    tmp_path: Path, procs: list[Proc]
) -> None:
    mesh = start_mesh(tmp_path, procs)
    old_root, old_inter = _generation(mesh.cp, 1)
    # A client leaf of the old issuing CA is accepted before the rotation.
    old_leaf = old_inter.leaf(CLIENT)
    assert _handshake(mesh.ingress, old_root, old_leaf, tmp_path)
    load = Load(mesh.egress).start()
    try:
        time.sleep(10)
        plait(mesh.cp, "ca", "rotate")
        assert _ca(mesh.cp)["phase"] == "rotating"
        # Both sidecars renew onto the new root (TTL 60 s, renewal at 30 s ± 6 s), the old
        # leaves expire, and the CA drops the old root.
        wait_for(lambda: _ca(mesh.cp)["phase"] == "stable", timeout=120, step=2)
        # One more renewal each: the sidecars get the bundle without the old root.
        counts = {s.log: len(serials(s)) for s in (mesh.web, mesh.client)}
        wait_for(
            lambda: all(len(serials(s)) > counts[s.log] for s in (mesh.web, mesh.client)),
            timeout=60,
            step=1,
        )
    finally:
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:20]}"
    assert load.ok > 500
    status = _ca(mesh.cp)
    new_root, new_inter = _generation(mesh.cp, 2)
    roots = status["roots"]
    assert isinstance(roots, list) and len(roots) == 1
    new_fp = x509.load_pem_x509_certificate(new_root).fingerprint(hashes.SHA256()).hex()
    assert roots[0]["fingerprint"] == new_fp
    # The server sidecar's leaf chains to the new root alone: a client that trusts only the
    # old root can no longer verify it (its chain lost the cross-signed root) ...
    new_leaf = new_inter.leaf(CLIENT)
    assert _handshake(mesh.ingress, new_root, new_leaf, tmp_path)
    assert not _handshake(mesh.ingress, old_root, new_leaf, tmp_path)
    # ... and its bundle no longer holds the old root: a leaf of the old CA is refused.
    before = refusals(mesh.web.admin_port, "unknown_ca")
    assert not _handshake(mesh.ingress, new_root, old_inter.leaf(CLIENT), tmp_path)
    assert refusals(mesh.web.admin_port, "unknown_ca") > before
    assert mtls_connections(mesh.web) > 0
