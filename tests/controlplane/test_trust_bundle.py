"""The trust bundle over SDS, real processes: a root rotation on the control plane reaches a
connected sidecar's CertStore at once, without a new leaf."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import (
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _bundle(dump: dict[str, Any]) -> dict[str, Any]:
    return dict(dump["xds"]["trust_bundle"])


def test_a_root_rotation_reaches_a_connected_sidecar_without_a_renewal(tmp_path: Path) -> None:
    cp = start_control_plane(tmp_path)
    try:
        token = plait(cp, "workload", "token", "-s", "cart").stdout.strip()
        sidecar = start_xds_sidecar(
            tmp_path, cp, "cart", "--service-account", "cart", "--join-token", token,
            "--ca-server", f"http://127.0.0.1:{cp.extra['api']}", wait=False,
        )  # fmt: skip
        try:
            old = json.loads(plait(cp, "ca", "status", "-o", "json").stdout)["roots"]
            assert [r["role"] for r in old] == ["current"]
            wait_for(lambda: _bundle(config_dump(sidecar))["version"], timeout=20)
            before = _bundle(config_dump(sidecar))
            assert before["roots"] == [old[0]["fingerprint"]]

            status = json.loads(plait(cp, "ca", "rotate", "-o", "json").stdout)
            roots = {r["role"]: r["fingerprint"] for r in status["roots"]}
            assert roots["previous"] == old[0]["fingerprint"] != roots["current"]
            wait_for(
                lambda: set(_bundle(config_dump(sidecar))["roots"]) == set(roots.values()),
                timeout=10,
            )
            after = _bundle(config_dump(sidecar))
            assert after["version"] != before["version"]
            log = sidecar.log.read_text()
            assert "renewed certificate" not in log  # the bundle came alone (leaf TTL 1 h)
            assert "trust bundle from the control plane: 2 root(s)" in log
        finally:
            sidecar.stop()
    finally:
        cp.stop()


def test_a_sidecar_without_a_ca_identity_does_not_follow_the_bundle(tmp_path: Path) -> None:
    cp = start_control_plane(tmp_path)
    try:
        sidecar = start_xds_sidecar(tmp_path, cp, "cart", wait=False)
        try:
            wait_for(lambda: config_dump(sidecar)["xds"]["connected"], timeout=20)
            assert "trust_bundle" not in config_dump(sidecar)["xds"]
        finally:
            sidecar.stop()
    finally:
        cp.stop()
