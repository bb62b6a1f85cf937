"""An in-process control plane on a real socket (a blocking portal runs its event loop).

Tests talk to it with ``http.client`` like any client; its store is inspected
through the portal, so "nothing stored" is checked against the store itself.
"""

from __future__ import annotations

import functools
import http.client
import json
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from plait.controlplane.server import ControlPlaneOptions, RunningControlPlane, run_control_plane
from plait.controlplane.store import StoredResource


@dataclass
class FakeRegistry:
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.statuses.get((namespace, name))

    def check(self) -> list[Mapping[str, Any]]:
        return list(self.rows)

    def scrape_targets(self) -> list[dict[str, Any]]:
        return []


@dataclass
class Server:
    portal: BlockingPortal
    running: RunningControlPlane

    @property
    def port(self) -> int:
        return self.running.api_port

    @property
    def token(self) -> str:
        return self.running.token

    @property
    def tls(self) -> ssl.SSLContext:
        """Trusts the control plane's own roots (its API is HTTPS)."""
        assert self.running.ca_bundle is not None
        return ssl.create_default_context(cafile=str(self.running.ca_bundle))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        token: str | None = "",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """``token=""``: the right one; ``None``: none; else that token."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["authorization"] = f"Bearer {token or self.token}"
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
        finally:
            conn.close()

    def apply(self, text: str, source: str = "test.yaml") -> tuple[int, Any]:
        status, _, body = self.request("POST", f"/api/v1/apply?source={source}", text)
        return status, body

    def stored(self) -> list[StoredResource]:
        return list(self.portal.call(self.running.context.store.list))

    @property
    def revision(self) -> int:
        return self.running.context.store.revision


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def server(tmp_path: Path, registry: FakeRegistry) -> Iterator[Server]:
    opts = ControlPlaneOptions(data_dir=tmp_path / "data", api_port=0)
    with start_blocking_portal("asyncio") as portal:
        run = functools.partial(run_control_plane, registry=registry, handle_signals=False)
        future, running = portal.start_task(run, opts)
        try:
            yield Server(portal, running)
        finally:
            future.cancel()  # the portal waits for the task to end on exit
