"""``plait sidecar --join-token``: a real sidecar process gets its certificate from a real
control plane, and refuses what it cannot do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import (
    PY,
    free_port,
    http_get,
    simple_config,
    start_sidecar,
    wait_ready,
    write_config,
)
from tests.support.controlplane import plait, start_control_plane, start_xds_sidecar, wait_for

pytestmark = pytest.mark.e2e


def test_sidecar_gets_its_certificate_with_a_join_token(tmp_path: Path) -> None:
    cp = start_control_plane(tmp_path)
    try:
        token = plait(cp, "workload", "token", "-n", "default", "-s", "cart").stdout.strip()
        sidecar = start_xds_sidecar(
            tmp_path,
            cp,
            "cart",
            "--service-account",
            "cart",
            wait=False,
            env={
                "PLAIT_JOIN_TOKEN": token,
                "PLAIT_CA_SERVER": f"https://127.0.0.1:{cp.extra['api']}",
            },
        )
        try:
            wait_for(
                lambda: (
                    "first certificate for spiffe://plait.local/ns/default/sa/cart"
                    in sidecar.log.read_text()
                ),
                timeout=20,
            )
            status = json.loads(plait(cp, "ca", "status", "-o", "json").stdout)
            assert status["issued"]["first"] == 1
            assert sidecar.popen.poll() is None
            assert token not in sidecar.log.read_text()  # the secret is not logged
        finally:
            sidecar.stop()
        # The same token again: the sidecar stops at once, with the CA's reason; so does one
        # whose --service-account (here the default) is not the token's.
        fresh = plait(cp, "workload", "token", "-s", "cart").stdout.strip()
        for used, flags, reason in (
            (token, ("--service-account", "cart"), "already used"),
            (fresh, (), "presented for serviceAccount default"),
        ):
            again = start_xds_sidecar(
                tmp_path,
                cp,
                "cart",
                "--join-token",
                used,
                "--ca-server",
                f"https://127.0.0.1:{cp.extra['api']}",
                *flags,
                node_id=f"again-{len(flags)}",
                wait=False,
            )
            try:
                assert again.popen.wait(20) == 1
                assert reason in again.log.read_text()
            finally:
                again.stop()
    finally:
        cp.stop()


def test_join_token_with_several_workers_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            PY,
            "-m",
            "plait.core.ops.cli",
            "sidecar",
            "--config",
            str(tmp_path),
            "--workers",
            "2",
            "--join-token",
            "x",
            "--ca-server",
            "http://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 2 and "single use" in r.stderr and "--workers" in r.stderr


def test_not_ready_until_the_certificate_arrives_from_a_ca_that_was_down(tmp_path: Path) -> None:
    api = free_port()
    cp = start_control_plane(tmp_path, api_port=api)
    token = plait(cp, "workload", "token", "-s", "default").stdout.strip()
    cp.stop()
    admin = free_port()
    config = write_config(tmp_path, simple_config(free_port(), free_port(), admin))
    sidecar = start_sidecar(config, admin, "--ca-server", f"https://127.0.0.1:{api}",
                            wait=False, env={"PLAIT_JOIN_TOKEN": token})  # fmt: skip
    try:
        wait_for(lambda: "the CA at" in sidecar.log.read_text() and "unavailable"
                 in sidecar.log.read_text(), timeout=20)  # fmt: skip
        assert http_get(admin, "/ready", timeout=2)[0] == 503
        cp = start_control_plane(tmp_path, api_port=api)  # the same data dir: the same CA
        try:
            wait_ready(sidecar, timeout=30)
            assert "first certificate for spiffe://plait.local/ns/default/sa/default" in (
                sidecar.log.read_text()
            )
        finally:
            cp.stop()
    finally:
        sidecar.stop()
