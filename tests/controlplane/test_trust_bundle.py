"""The trust bundle over SDS, real processes: a root rotation on the control plane reaches a
connected sidecar's CertStore at once, without a new leaf."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from plait.controlplane._trust_bundle import TrustBundleSource
from plait.controlplane.xds import CLUSTER, MemorySource, NodeInfo
from plait.core.xds.wire import SDS_ROOTS, SECRET
from tests.support.controlplane import (
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)


def test_the_bundle_is_one_secret_for_every_node_and_a_change_bumps_the_revision() -> None:
    bundle = [b"-----BEGIN CERTIFICATE-----\nroot-1\n"]
    inner = MemorySource()
    inner.set(CLUSTER, {})
    source = TrustBundleSource(inner, lambda: bundle[0])
    a, b = NodeInfo(id="a"), NodeInfo(id="b")
    secret = source.resources(a, SECRET, frozenset({SDS_ROOTS}))[SDS_ROOTS]
    assert secret.validation_context.trusted_ca.inline_bytes == bundle[0]
    assert source.resources(b, SECRET, None)[SDS_ROOTS] is secret  # shared, encoded once
    assert source.resources(a, SECRET, frozenset({"default"})) == {}  # leaves come from the CA
    start = source.revision
    assert source.check() is False and source.revision == start
    bundle[0] += b"root-2\n"
    assert source.check() is True and source.revision == start + 1
    assert source.resources(a, SECRET, None)[SDS_ROOTS].validation_context.trusted_ca.inline_bytes \
        == bundle[0]  # fmt: skip
    inner.bump()
    assert source.revision == start + 2  # the mesh's changes still count


async def _waits_for_a_bundle_change() -> None:
    bundle = [b"one"]
    source = TrustBundleSource(MemorySource(), lambda: bundle[0], poll=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(source.run)
        start = source.revision
        bundle[0] = b"two"
        with anyio.fail_after(5):
            assert await source.wait_for(start) == start + 1
        tg.cancel_scope.cancel()


def test_run_polls_the_ca_and_wakes_the_server() -> None:
    anyio.run(_waits_for_a_bundle_change)


def _bundle(dump: dict[str, Any]) -> dict[str, Any]:
    return dict(dump["xds"]["trust_bundle"])


@pytest.mark.e2e
def test_a_root_rotation_reaches_a_connected_sidecar_without_a_renewal(tmp_path: Path) -> None:
    cp = start_control_plane(tmp_path)
    try:
        token = plait(cp, "workload", "token", "-s", "cart").stdout.strip()
        sidecar = start_xds_sidecar(
            tmp_path, cp, "cart", "--service-account", "cart", "--join-token", token,
            "--ca-server", f"https://127.0.0.1:{cp.extra['api']}", wait=False,
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


@pytest.mark.e2e
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
