"""The sidecar's xDS client presents its own certificate (the agent's, renewed ones from the
next connection on, or one from ``--identity-*`` files the CA issued): a real sidecar, a real
control plane (60 s certificates for the renewal), real TLS.

The control plane logs, for every stream, the SPIFFE ID and serial of the client
certificate it verified; the sidecar's ``/certs`` shows the serial it holds.
"""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest

from tests.support import Proc, free_port, http_get
from tests.support.ca import key_pem, make_csr
from tests.support.controlplane import (
    api_context,
    apply,
    ca_bundle,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e

MESH = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: %d}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: web}
spec:
  egress:
  - port: {number: %d, protocol: http}
    service: web
"""
WEB = "spiffe://plait.local/ns/default/sa/web"


def _serial(sidecar: Proc) -> str | None:
    status, _, body = http_get(sidecar.admin_port, "/certs", timeout=5)
    leaf = json.loads(body)["leaf"] if status == 200 else None
    return str(leaf["serial"]) if leaf else None


def _seen(cp: Proc, node_id: str) -> list[str]:
    """The client certificate serials the control plane verified for ``node_id``'s streams."""
    pattern = re.compile(rf"{re.escape(node_id)} connected from \S+ \(sotw; {WEB}, serial (\w+)\)")
    return pattern.findall(cp.log.read_text())


def test_a_renewed_certificate_is_presented_on_the_next_connection(tmp_path: Path) -> None:
    xds, plain = free_port(), free_port()
    args = ("--cert-ttl", "60", "--xds-plaintext-port", str(plain))
    cp = start_control_plane(tmp_path, xds_port=xds, extra=args)
    api, data = cp.extra["api"], cp.config
    sidecar = None
    try:
        apply(cp, tmp_path, MESH % (free_port(), free_port()))
        token = plait(cp, "workload", "token", "-s", "web").stdout.strip()
        sidecar = start_xds_sidecar(
            tmp_path, cp, "web", "--service-account", "web", "--ca-server",
            f"https://127.0.0.1:{api}", node_id="web-1", env={"PLAIT_JOIN_TOKEN": token},
        )  # fmt: skip
        first = _serial(sidecar)
        assert first is not None
        wait_for(lambda: _seen(cp, "web-1") == [first], timeout=10)
        # Renewed at about half of the 60 s lifetime; the open stream keeps its connection.
        wait_for(lambda: _serial(sidecar) not in (None, first), timeout=50, step=0.5)
        second = _serial(sidecar)
        assert _seen(cp, "web-1") == [first]
        cp.stop()  # every connection ends; the sidecar reconnects to the new process
        cp = start_control_plane(tmp_path, data_dir=data, api_port=api, xds_port=xds,
                                 extra=args)  # fmt: skip
        wait_for(lambda: _seen(cp, "web-1") == [second], timeout=20)
        wait_for(lambda: config_dump(sidecar)["xds"]["connected"], timeout=10)
        assert second != first
    finally:
        if sidecar is not None:
            sidecar.stop()
        cp.stop()


def test_a_certificate_from_files_the_ca_issued_is_presented_too(tmp_path: Path) -> None:
    cp = start_control_plane(tmp_path)
    sidecar = None
    try:
        apply(cp, tmp_path, MESH % (free_port(), free_port()))
        token = plait(cp, "workload", "token", "-s", "web").stdout.strip()
        key, csr = make_csr()
        conn = http.client.HTTPSConnection("127.0.0.1", cp.extra["api"], timeout=10,
                                           context=api_context(cp))  # fmt: skip
        conn.request("POST", "/api/v1/certificates", json.dumps({"csr": csr, "token": token}),
                     {"content-type": "application/json"})  # fmt: skip
        issued = json.loads(conn.getresponse().read())
        conn.close()
        (tmp_path / "chain.pem").write_text(issued["chain"])
        (tmp_path / "key.pem").write_bytes(key_pem(key))
        sidecar = start_xds_sidecar(
            tmp_path, cp, "web", "--ca-bundle", str(ca_bundle(cp)),
            "--identity-cert", str(tmp_path / "chain.pem"), "--identity-key",
            str(tmp_path / "key.pem"), "--trust-bundle", str(ca_bundle(cp)), node_id="web-files",
        )  # fmt: skip
        assert config_dump(sidecar)["xds"]["connected"] is True
        assert _seen(cp, "web-files") == [issued["serial"]] == [_serial(sidecar)]
    finally:
        if sidecar is not None:
            sidecar.stop()
        cp.stop()
