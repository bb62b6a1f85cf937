"""The sidecar's ADS client against plait's real ADS server (grpc over 127.0.0.1).

The server serves an encoded static example from a ``MemorySource``; the
client decodes with the real registry, so what it "applies" is the MeshConfig a
sidecar would run. ACKs and NACKs are observed on the server side.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from plait.controlplane.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, AdsServer, MemorySource
from plait.controlplane.xds._encode import encode_mesh
from plait.core.config import AdminConfig, MeshConfig, load_config
from plait.core.xds._client import XdsClient, make_node
from plait.core.xds._decode import Incomplete, decode_mesh, referenced_names
from plait.core.xds._state import load_state, save_state
from plait.core.xds.wire import combined_version
from plait.plugins import load_filter_types
from tests.controlplane.xds.xds_harness import Recorder, running
from tests.support import free_port

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parents[3] / "examples" / "static" / "grpc.yaml"
TYPES = load_filter_types()


def _source(cfg: MeshConfig) -> MemorySource:
    source = MemorySource()
    for type_url, by_name in encode_mesh(cfg).items():
        source.set(type_url, by_name)
    return source


class _Sidecar:
    """Decodes like a sidecar; ``refuse`` makes the install step fail (a port in use...)."""

    def __init__(self) -> None:
        self.applied: list[MeshConfig] = []
        self.refuse: str | None = None

    async def apply(self, resources: Any, versions: Mapping[str, str]) -> str | None:
        cfg = decode_mesh(resources, TYPES, version=combined_version(versions),
                          admin=AdminConfig())  # fmt: skip
        if self.refuse:
            return self.refuse
        self.applied.append(cfg)
        return None


def _client(target: str, sidecar: _Sidecar) -> XdsClient:
    return XdsClient(target, make_node("test-node", {"sidecar": "x"}), sidecar.apply,
                     incomplete=Incomplete, needed=referenced_names)  # fmt: skip


async def _until(check: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


async def test_the_client_builds_the_same_config_as_static_mode_and_acks() -> None:
    static = load_config([EXAMPLE], TYPES)
    recorder, sidecar = Recorder(), _Sidecar()
    async with running(_source(static), recorder) as target, anyio.create_task_group() as tg:
        client = _client(target, sidecar)
        tg.start_soon(client.run)
        await _until(lambda: sidecar.applied)
        got = sidecar.applied[-1]
        assert got.listeners == static.listeners
        assert dict(got.clusters) == dict(static.clusters)
        assert dict(got.routes) == dict(static.routes)
        await _until(lambda: {e[2] for e in recorder.of("acked")} >= {LISTENER, ROUTE, CLUSTER,
                                                                   ENDPOINT})  # fmt: skip
        assert recorder.of("nacked") == []
        assert client.status.connected
        tg.cancel_scope.cancel()


async def test_a_refused_config_is_nacked_with_the_reason_and_the_old_one_stays() -> None:
    static = load_config([EXAMPLE], TYPES)
    source = _source(static)
    recorder, sidecar = Recorder(), _Sidecar()
    async with running(source, recorder) as target, anyio.create_task_group() as tg:
        client = _client(target, sidecar)
        tg.start_soon(client.run)
        await _until(lambda: sidecar.applied)
        sidecar.refuse = "OSError: [Errno 98] address already in use"
        moved = encode_mesh(static)[ENDPOINT]
        for cla in moved.values():
            cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value += 1
        source.set(ENDPOINT, moved)
        await recorder.wait_for("nacked", timeout=5)
        (_, _, type_url, _, message) = recorder.of("nacked")[0]
        assert type_url == ENDPOINT and "address already in use" in str(message)
        assert "address already in use" in (client.status.last_nack or "")
        assert len(sidecar.applied) == 1
        tg.cancel_scope.cancel()


async def test_the_client_reconnects_when_the_control_plane_comes_back() -> None:
    static = load_config([EXAMPLE], TYPES)
    recorder, sidecar = Recorder(), _Sidecar()
    port = free_port()

    async def control_plane(scope: anyio.CancelScope) -> None:
        with scope:
            await AdsServer(_source(static), recorder, stop_grace=0.1).serve("127.0.0.1", port)

    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()
        tg.start_soon(control_plane, first)
        client = _client(f"127.0.0.1:{port}", sidecar)
        tg.start_soon(client.run)
        await _until(lambda: client.status.connected and sidecar.applied)
        first.cancel()  # the control plane goes away; the sidecar keeps its config
        await _until(lambda: not client.status.connected and client.status.last_error)
        assert len(sidecar.applied) == 1
        tg.start_soon(control_plane, anyio.CancelScope())  # and comes back on its port
        await _until(lambda: client.status.connected, timeout=10)
        await _until(lambda: len(recorder.of("connected")) == 2)
        assert client.status.reconnects >= 1
        tg.cancel_scope.cancel()


def test_the_saved_config_decodes_to_what_was_applied(tmp_path: Path) -> None:
    static = load_config([EXAMPLE], TYPES)
    encoded = encode_mesh(static)
    versions = {t: f"v-{i}" for i, t in enumerate(encoded)}
    path = tmp_path / "state" / "node.xds.json"
    save_state(path, encoded, versions)
    loaded = load_state(path)
    assert loaded is not None
    resources, got_versions = loaded
    assert got_versions == versions
    cfg = decode_mesh(resources, TYPES, version="x", admin=AdminConfig())
    assert cfg.listeners == static.listeners and dict(cfg.routes) == dict(static.routes)
    assert load_state(tmp_path / "missing.json") is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable saved config"):
        load_state(path)
