"""``plait.sdk.mesh``: an extension made before the sidecar runs is called back once it does."""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine
from typing import Any

from plait.sdk import Headers, RequestHead, mesh
from plait.sdk.mesh import MeshResponse


class _Host:
    def cluster_names(self) -> Collection[str]:
        return ("a.default:80",)

    def filter_configs(self) -> Collection[object]:
        return ()

    async def request(
        self, cluster: str, head: RequestHead, body: bytes, trailers: Headers | None
    ) -> MeshResponse:
        return MeshResponse(200, Headers(), b"")

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        return None


def test_when_running_waits_for_install_then_calls_at_once() -> None:
    seen: list[object] = []
    assert mesh.current() is None
    mesh.when_running(seen.append)
    assert seen == []
    host = _Host()
    try:
        mesh.install(host)
        assert seen == [host] and mesh.current() is host
        mesh.when_running(seen.append)
        assert seen == [host, host]
    finally:
        mesh.install(None)
    assert mesh.current() is None
