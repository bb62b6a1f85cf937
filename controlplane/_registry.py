"""The service registry: which sidecars are connected, what they run, where they serve.

Theory of operation: the ADS server reports every stream to the registry (an
:class:`~plait.controlplane.xds.XdsObserver`). A plait sidecar announces in
its node metadata the Sidecar resource it runs and, when it fronts an
instance of a Service, its Workload (service, address, service account,
labels). On connect the registry writes that ``Workload`` into the store —
through the same validation as ``plait apply`` — so its endpoints join the
Service's clusters and every sidecar's EDS. Its ports are the sidecar's
ingress listeners: the n-th ingress listener serves the n-th Service port of
a matching protocol family, so
peers reach the instance through its sidecar's inbound chain.

On disconnect the Workload stays for a **grace period** (a restart or a
control-plane failover must not empty the endpoint set), then it is deleted;
a sidecar that comes back within the grace period simply keeps it. ACKs and
NACKs are kept per node and type: ``plait get workloads`` shows the version
each sidecar runs and its last NACK with the reason; ``plait check`` fails
while any sidecar is disconnected or NACKs its current config.

The store writes happen in :meth:`run` (observer callbacks are synchronous),
which owns them; nothing else writes ``Workload`` resources it registered.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .store import Key, Store
from .xds import StreamInfo

__all__ = ["REGISTERED", "Registry", "workload_name"]

log = logging.getLogger("plait.controlplane.registry")

REGISTERED = "plait.dev/registered-by"
"""Annotation on the Workloads the registry wrote (value: the node id)."""
_INVALID = re.compile(r"[^a-z0-9.-]+")


def workload_name(node_id: str) -> str:
    """A DNS-subdomain resource name for a node id."""
    name = _INVALID.sub("-", node_id.lower()).strip("-.")[:253]
    return name or "node"


@dataclass
class _Node:
    node_id: str
    sidecar: str = ""
    workload: Key | None = None
    streams: int = 0
    connected_since: float | None = None
    disconnected_at: float | None = None
    peer: str = ""
    flavor: str = ""
    acked: dict[str, str] = field(default_factory=dict)
    last_nack: dict[str, Any] | None = None
    nacking: set[str] = field(default_factory=set)
    """Types whose latest response was NACKed (cleared by an ACK of that type)."""
    error: str | None = None


class Registry:
    def __init__(self, store: Store, *, grace: float = 30.0) -> None:
        self.store = store
        self.grace = grace
        self.nodes: dict[str, _Node] = {}
        self._send: MemoryObjectSendStream[tuple[str, str]]
        self._recv: MemoryObjectReceiveStream[tuple[str, str]]
        self._send, self._recv = anyio.create_memory_object_stream[tuple[str, str]](math.inf)
        self._pending: dict[str, dict[str, Any]] = {}

    # -- XdsObserver --------------------------------------------------------------------------

    def connected(self, stream: StreamInfo) -> None:
        node = self.nodes.setdefault(stream.node.id, _Node(stream.node.id))
        node.streams += 1
        node.connected_since = node.connected_since or stream.connected_at
        node.disconnected_at = None
        node.peer, node.flavor = stream.peer, stream.flavor
        meta = stream.node.metadata.get("plait")
        if isinstance(meta, Mapping):
            node.sidecar = f"{meta.get('sidecar', '')}.{meta.get('namespace') or 'default'}"
            if isinstance(meta.get("workload"), Mapping):
                self._send.send_nowait(("register", stream.node.id))
                self._pending[stream.node.id] = dict(meta)

    def acked(self, stream: StreamInfo, type_url: str, version: str) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.acked[_short(type_url)] = version
            node.nacking.discard(_short(type_url))

    def nacked(self, stream: StreamInfo, type_url: str, version: str, message: str) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.last_nack = {"type": _short(type_url), "version": version,
                              "message": message, "at": time.time()}  # fmt: skip
            node.nacking.add(_short(type_url))

    def disconnected(self, stream: StreamInfo) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.streams -= 1
            if node.streams <= 0:
                node.streams = 0
                node.connected_since = None
                node.disconnected_at = time.time()

    # -- the store side ---------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sweep)
            async for op, node_id in self._recv:
                meta = self._pending.pop(node_id, None)
                if op == "register" and meta is not None:
                    await self._register(node_id, meta)

    async def _register(self, node_id: str, meta: Mapping[str, Any]) -> None:
        from ._workloads import workload_document, write_workload

        node = self.nodes[node_id]
        try:
            doc = await workload_document(self.store, node_id, meta)
            node.workload = await write_workload(self.store, doc)
            node.error = None
        except ValueError as exc:
            node.error = str(exc)
            log.error("cannot register the workload of %s: %s", node_id, exc)

    async def _sweep(self) -> None:
        """Delete the Workloads of nodes gone for longer than the grace period."""
        while True:
            await anyio.sleep(min(1.0, self.grace / 4))
            now = time.time()
            for node in list(self.nodes.values()):
                gone = node.disconnected_at
                if gone is None or now - gone < self.grace:
                    continue
                if node.workload is not None:
                    await self.store.delete(node.workload)
                    log.info("workload %s removed: %s gone for %.0fs",
                             node.workload, node.node_id, now - gone)  # fmt: skip
                del self.nodes[node.node_id]

    # -- what the API shows (RegistryView) --------------------------------------------------

    def status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        for node in self.nodes.values():
            if node.workload == Key("Workload", namespace, name) or (
                node.workload is None and workload_name(node.node_id) == name
            ):
                return self._row(node)
        return None

    def check(self) -> list[Mapping[str, Any]]:
        return [self._row(n) for n in sorted(self.nodes.values(), key=lambda n: n.node_id)]

    def _row(self, node: _Node) -> dict[str, Any]:
        problems = []
        if not node.streams:
            problems.append("disconnected")
        if node.nacking:
            problems.append("NACKs " + ", ".join(sorted(node.nacking)))
        if node.error:
            problems.append(node.error)
        return {
            "node": node.node_id,
            "sidecar": node.sidecar,
            "workload": str(node.workload) if node.workload else None,
            "connected": bool(node.streams),
            "connectedSince": node.connected_since,
            "disconnectedAt": node.disconnected_at,
            "peer": node.peer,
            "flavor": node.flavor,
            "ackedVersions": dict(node.acked),
            "lastNack": node.last_nack,
            "ok": not problems,
            "problems": problems,
        }


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]
