"""The sidecar's requests for extensions (``plait.sdk.mesh``): through the runtime's real
upstream pools to a real echo server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from plait.core.config import load_config
from plait.core.ops._mesh import SidecarMesh
from plait.core.runtime import Runtime
from plait.plugins import load_filter_types
from plait.sdk import Headers, NoHealthyUpstream, RequestHead, UpstreamConnectError
from tests.support import Proc, free_port, simple_config, start_echo, write_config

pytestmark = pytest.mark.anyio


def _runtime(tmp: Path, upstream_port: int) -> Runtime:
    text = simple_config(upstream_port, free_port(), free_port())
    return Runtime(load_config([write_config(tmp, text)], load_filter_types()))


async def test_request_goes_through_the_pools_and_reuses_a_connection(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    runtime = _runtime(tmp_path, echo.port)
    try:
        async with anyio.create_task_group() as tg:
            mesh = SidecarMesh(runtime, tg)
            assert list(mesh.cluster_names()) == ["upstream.default:80"]
            for n in range(2):
                head = RequestHead(
                    method="POST", path=f"/check/{n}", authority="auth", headers=Headers()
                )
                response = await mesh.request("upstream.default:80", head, b"hello", None)
                assert response.status == 200
                echoed = json.loads(response.body)
                assert (echoed["path"], echoed["body"]) == (f"/check/{n}", "hello")
                assert echoed["headers"]["content-length"] == "5"
            crt = runtime.snapshot.clusters["upstream.default:80"]
            pool = crt.pools[0]
            warm = pool.take()  # the connection went back to the pool
            assert warm is not None and warm.reused
            warm.finish(True)
    finally:
        runtime.close()


async def test_unknown_cluster_and_refused_connection(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, free_port())  # nothing listens there
    try:
        async with anyio.create_task_group() as tg:
            mesh = SidecarMesh(runtime, tg)
            head = RequestHead(method="GET", path="/", authority="x")
            with pytest.raises(NoHealthyUpstream, match="nosuch"):
                await mesh.request("nosuch", head, b"", None)
            with pytest.raises(UpstreamConnectError):
                await mesh.request("upstream.default:80", head, b"", None)
    finally:
        runtime.close()


async def test_a_cancelled_request_resets_its_upstream_stream(
    tmp_path: Path, procs: list[Proc]
) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    runtime = _runtime(tmp_path, echo.port)
    try:
        async with anyio.create_task_group() as tg:
            mesh = SidecarMesh(runtime, tg)
            head = RequestHead(method="GET", path="/delay/2", authority="x")
            with anyio.move_on_after(0.2) as scope:
                await mesh.request("upstream.default:80", head, b"", None)
            assert scope.cancelled_caught
            pool = runtime.snapshot.clusters["upstream.default:80"].pools[0]
            assert pool.take() is None  # the half-used connection was not pooled
    finally:
        runtime.close()
