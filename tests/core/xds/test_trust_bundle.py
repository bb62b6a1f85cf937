"""The sidecar's side of SDS: ``XdsMode.follow_trust_bundle`` against plait's real ADS server.

The server serves the Secret ``ROOTCA`` from a ``MemorySource`` (built by the control
plane's own encoder); the sidecar side hands each bundle to a real ``CertStore``. A bundle
that cannot be used is NACKed with the reason and the store keeps its roots.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # type: ignore[import-untyped]

from plait.controlplane._trust_bundle import bundle_secret
from plait.controlplane.xds import MemorySource
from plait.core.config import AdminConfig, MeshConfig
from plait.core.identity import CertStore
from plait.core.xds._mode import XdsMode, XdsOptions
from plait.core.xds.wire import SDS_ROOTS, SECRET
from plait.plugins import load_filter_types
from tests.controlplane.xds.xds_harness import Recorder, running
from tests.support.pki import Authority

pytestmark = pytest.mark.anyio


async def _until(check: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


async def _install(config: MeshConfig) -> str | None:
    return None


class Rig:
    def __init__(self, source: MemorySource, recorder: Recorder, mode: XdsMode, store: CertStore):
        self.source, self.recorder, self.mode, self.store = source, recorder, mode, store

    def push(self, secret: Any) -> None:
        self.source.set(SECRET, {SDS_ROOTS: secret})

    @property
    def version(self) -> Any:
        return self.mode.dump()["trust_bundle"]["version"]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    old = Authority.create("old")
    store = CertStore()
    chain, key = old.leaf("spiffe://plait.local/ns/default/sa/cart")
    store.update(chain_pem=chain, key_pem=key, bundle_pem=old.pem)
    source, recorder = MemorySource(), Recorder()
    source.set(SECRET, {SDS_ROOTS: bundle_secret(old.pem)})
    async with running(source, recorder) as target, anyio.create_task_group() as tg:
        mode = XdsMode(XdsOptions(target=target, node_id="n", sidecar="cart"),
                       load_filter_types(), AdminConfig())  # fmt: skip
        mode.follow_trust_bundle(store)
        tg.start_soon(mode.run, _install)
        rig = Rig(source, recorder, mode, store)
        await _until(lambda: rig.version is not None)
        yield rig
        tg.cancel_scope.cancel()


async def test_a_new_bundle_reaches_the_store_with_the_same_leaf(rig: Rig) -> None:
    serial = rig.store.leaf.serial if rig.store.leaf else None
    both = rig.store.bundle_pem + Authority.create("new").pem
    before = rig.version
    rig.push(bundle_secret(both))
    await _until(lambda: rig.store.bundle_pem == both)
    assert rig.store.leaf is not None and rig.store.leaf.serial == serial
    await _until(lambda: rig.version != before)
    assert len(rig.mode.dump()["trust_bundle"]["roots"]) == 2
    assert rig.recorder.of("nacked") == []


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (secret_pb2.Secret(name=SDS_ROOTS), "expected validation_context.trusted_ca"),
        (bundle_secret(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
         "Secret ROOTCA:"),
        (bundle_secret(b"no pem here"), "Secret ROOTCA:"),
    ],
)  # fmt: skip
async def test_an_unusable_bundle_is_nacked_and_the_roots_stay(
    rig: Rig, secret: Any, reason: str
) -> None:
    kept, version = rig.store.bundle_pem, rig.version
    rig.push(secret)
    await rig.recorder.wait_for("nacked", timeout=5)
    (_, _, type_url, _, message) = rig.recorder.of("nacked")[0]
    assert type_url == SECRET and reason in str(message)
    assert rig.store.bundle_pem == kept and rig.version == version
    assert reason in (rig.mode.client.status.last_nack or "")
