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

Health: every ``health_interval`` the registry TCP-connects the endpoints of
every Workload in the store, registered or applied by hand (``address`` and
each ``targetPort``: the sidecar's inbound listener, or the app itself);
``unhealthy_after`` failures in a row leave it out of every EDS
(:meth:`MeshSource.set_unhealthy`), one success brings it back — the resource
itself is not touched. Endpoints a Service lists itself (``spec.endpoints``)
are not Workloads and are not checked.

On disconnect the Workload stays for a **grace period** (a restart or a
control-plane failover must not empty the endpoint set), then it is deleted and the
node id is free again (its binding to an identity is dropped);
a sidecar that comes back within the grace period simply keeps it. The same
holds across a control-plane restart: at start the registry adopts every
stored Workload it registered (annotation ``plait.dev/registered-by``) whose
sidecar has not connected yet, as disconnected at that moment, so a sidecar
that went away while the control plane was down loses its Workload one grace
period after the start, and ``plait check`` shows it disconnected meanwhile. A Workload
registered over the TLS xDS port records the SPIFFE ID it was registered with; adopting
it binds its node id to that identity again (``owners``, ``_node_auth.py``).

ACKs and NACKs are kept per node and type: ``plait get workloads`` shows the version
each sidecar runs and its last NACK with the reason, until a later ACK of the
same type; ``plait check`` fails while any sidecar is disconnected or NACKs its
current config. A node that is not a plait sidecar (a proxyless gRPC client,
an Envoy) is forgotten when its last stream ends: it registered nothing, and
closing a channel is not a failure.

The store writes happen in :meth:`run` (observer callbacks are synchronous),
which owns them; nothing else writes ``Workload`` resources it registered.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from plait.core.xds.wire import ORDER, combined_version, short_name
from plait.sdk import ConfigError

from ._health import HealthChecks
from ._peer_address import admin_address
from ._scrape_targets import scrape_targets
from ._workloads import (
    REGISTERED,
    registered_by,
    registered_identity,
    workload_document,
    workload_name,
    workload_targets,
)
from .store import Key, Store
from .xds import StreamInfo

__all__ = ["REGISTERED", "Registry", "workload_name"]

log = logging.getLogger("plait.controlplane.registry")


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
    identity: str | None = None
    """The SPIFFE ID its xDS client certificate was verified with (``None``: plaintext)."""
    acked: dict[str, str] = field(default_factory=dict)
    """type URL → the version the node last ACKed."""
    last_nack: dict[str, Any] | None = None
    nacking: set[str] = field(default_factory=set)
    """Types whose latest response was NACKed (cleared by an ACK of that type)."""
    error: str | None = None
    admin: str | None = None
    """``HOST:PORT`` of the sidecar's admin listener (``/metrics``, ``/config_dump``), from its
    node metadata; a wildcard bind is reached at the address the xDS stream came from."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Its node metadata's ``plait`` part (Sidecar, namespace, Workload, admin)."""


class Writer(Protocol):
    """How the registry writes (the resource API: same validation and lock as ``apply``)."""

    async def write(self, document: Mapping[str, Any], source: str) -> str: ...

    async def remove(self, key: Key) -> bool: ...


class Registry:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        *,
        grace: float = 30.0,
        health_interval: float = 5.0,
        unhealthy_after: int = 3,
        on_health: Callable[[frozenset[str]], Awaitable[None]] | None = None,
        owners: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.owners = owners
        """node id → SPIFFE ID (``NodeBinding.owners``), filled from stored Workloads at start."""
        self.writer = writer
        self.grace = grace
        self.health_interval = health_interval
        self.unhealthy_after = unhealthy_after
        self.on_health = on_health
        self._health = HealthChecks(unhealthy_after)
        self.nodes: dict[str, _Node] = {}
        self._send: MemoryObjectSendStream[tuple[str, str]]
        self._recv: MemoryObjectReceiveStream[tuple[str, str]]
        self._send, self._recv = anyio.create_memory_object_stream[tuple[str, str]](math.inf)
        self._pending: dict[str, dict[str, Any]] = {}
        self._targets: dict[Key, tuple[tuple[str, int], ...]] = {}
        """Every stored Workload → the endpoints its health checks probe."""

    # -- XdsObserver --------------------------------------------------------------------------

    def connected(self, stream: StreamInfo) -> None:
        node = self.nodes.setdefault(stream.node.id, _Node(stream.node.id))
        node.streams += 1
        node.connected_since = node.connected_since or stream.connected_at
        node.disconnected_at = None
        node.peer, node.flavor, node.identity = stream.peer, stream.flavor, stream.identity
        meta = stream.node.metadata.get("plait")
        if isinstance(meta, Mapping):
            node.sidecar = f"{meta.get('sidecar', '')}.{meta.get('namespace') or 'default'}"
            node.admin = admin_address(meta.get("admin"), stream.peer)
            node.meta = dict(meta)
            if isinstance(meta.get("workload"), Mapping):
                self._pending[stream.node.id] = dict(meta)
                self._send.send_nowait(("register", stream.node.id))

    def acked(self, stream: StreamInfo, type_url: str, version: str) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.acked[type_url] = version
            node.nacking.discard(short_name(type_url))
            if node.last_nack is not None and node.last_nack["type"] == short_name(type_url):
                node.last_nack = None  # a later config of that type was applied

    def nacked(self, stream: StreamInfo, type_url: str, version: str, message: str) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.last_nack = {"type": short_name(type_url), "version": version,
                              "message": message, "at": time.time()}  # fmt: skip
            node.nacking.add(short_name(type_url))

    def disconnected(self, stream: StreamInfo) -> None:
        node = self.nodes.get(stream.node.id)
        if node is not None:
            node.streams -= 1
            if node.streams <= 0:
                node.streams = 0
                node.connected_since = None
                node.disconnected_at = time.time()
                if not node.sidecar and node.workload is None:
                    # not a plait sidecar (a proxyless gRPC client, an Envoy) and nothing
                    # registered: a client that closed its channel is simply gone
                    self._forget(node.node_id)

    # -- the store side ---------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Adopt the stored registrations (then report started), and run until cancelled."""
        await self._adopt()
        task_status.started()
        async with self._send, self._recv, anyio.create_task_group() as tg:
            tg.start_soon(self._sweep)
            if self.health_interval > 0:
                tg.start_soon(self._health_checks)
            async for op, node_id in self._recv:
                meta = self._pending.pop(node_id, None)
                if op == "register" and meta is not None:
                    await self._register(node_id, meta)

    async def _adopt(self) -> None:
        """Take over the Workloads an earlier run registered: a node not connected (yet) is
        disconnected as of now, so the grace period runs from this start."""
        now = time.time()
        for r in await self.store.list(kind="Workload"):
            node_id = registered_by(r.document)
            if node_id is None:
                continue
            identity = registered_identity(r.document)
            if identity is not None and self.owners is not None:
                self.owners.setdefault(node_id, identity)
            node = self.nodes.get(node_id)
            if node is None:
                node = self.nodes[node_id] = _Node(node_id, disconnected_at=now)
                log.info("workload %s: registered by %s, which has not connected since the "
                         "start; removed after %.0fs unless it does", r.key, node_id,
                         self.grace)  # fmt: skip
            if node.workload is None:
                node.workload = r.key

    async def _register(self, node_id: str, meta: Mapping[str, Any]) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        try:
            doc = await workload_document(self.store, node_id, meta, node.identity)
            await self.writer.write(doc, f"registration of {node_id}")
            node.workload = Key("Workload", doc["metadata"]["namespace"], doc["metadata"]["name"])
            node.error = None
        except (ValueError, ConfigError) as exc:
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
                    try:
                        await self.writer.remove(node.workload)
                    except ConfigError as exc:  # something else refers to it now
                        log.error("keeping workload %s: %s", node.workload, exc)
                        continue
                    log.info("workload %s removed: %s gone for %.0fs",
                             node.workload, node.node_id, now - gone)  # fmt: skip
                self._forget(node.node_id)

    def _forget(self, node_id: str) -> None:
        """The node is gone: its id is free again (``owners``: no Workload of it is left)."""
        del self.nodes[node_id]
        if self.owners is not None:
            self.owners.pop(node_id, None)

    async def _health_checks(self) -> None:
        """Each interval, probe the endpoints of every stored Workload (registered or applied); tell
        ``on_health`` when the unhealthy set changed (``_health.HealthChecks``)."""
        while True:
            await anyio.sleep(self.health_interval)
            self._targets = workload_targets(list(await self.store.list(kind=None)))
            targets = {ep for eps in self._targets.values() for ep in eps}
            if await self._health.round(targets):
                bad = self._health.unhealthy
                log.warning("health checks: unhealthy endpoints now %s", sorted(bad) or "none")
                if self.on_health is not None:
                    await self.on_health(bad)

    @property
    def unhealthy(self) -> frozenset[str]:
        return self._health.unhealthy

    # -- what the API shows (RegistryView) --------------------------------------------------

    def status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        key = Key("Workload", namespace, name)
        for node in self.nodes.values():
            if node.workload == key or (
                node.workload is None and workload_name(node.node_id) == name
            ):
                return self._row(node)
        if key in self._targets:
            return self._hand_row(key)
        return None

    def scrape_targets(self) -> list[dict[str, Any]]:
        return scrape_targets(self.nodes.values())

    def check(self) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = [
            self._row(n) for n in sorted(self.nodes.values(), key=lambda n: n.node_id)
        ]
        registered = {n.workload for n in self.nodes.values()}
        for key in sorted(self._targets.keys() - registered):
            row = self._hand_row(key)
            if row["problems"]:  # a hand-applied Workload is listed when it fails
                rows.append(row)
        return rows

    def _failing(self, endpoints: tuple[tuple[str, int], ...]) -> list[str]:
        return [f"{h}:{p}" for h, p in endpoints if f"{h}:{p}" in self.unhealthy]

    def _hand_row(self, key: Key) -> dict[str, Any]:
        """A Workload applied by hand: no sidecar connection, only its health checks."""
        failing = self._failing(self._targets[key])
        problems = ["failing health checks: " + ", ".join(failing)] if failing else []
        return {"workload": str(key), "registered": False, "healthy": not failing,
                "ok": not problems, "problems": problems}  # fmt: skip

    def _row(self, node: _Node) -> dict[str, Any]:
        problems = []
        if not node.streams:
            problems.append("disconnected")
        if node.nacking:
            problems.append("NACKs " + ", ".join(sorted(node.nacking)))
        if node.error:
            problems.append(node.error)
        failing = self._failing(self._targets.get(node.workload, ()) if node.workload else ())
        if failing:
            problems.append("failing health checks: " + ", ".join(failing))
        return {
            "node": node.node_id,
            "sidecar": node.sidecar,
            "workload": str(node.workload) if node.workload else None,
            "connected": bool(node.streams),
            "connectedSince": node.connected_since,
            "disconnectedAt": node.disconnected_at,
            "peer": node.peer,
            "admin": node.admin,
            "identity": node.identity,
            "flavor": node.flavor,
            "ackedVersions": {short_name(t): v for t, v in node.acked.items()},
            # the sidecar's snapshot version (its /config_dump "version") once all four
            # types are ACKed: the same hash over the same per-type versions
            "ackedVersion": combined_version(node.acked) if len(node.acked) == len(ORDER) else None,
            "lastNack": node.last_nack,
            "healthy": not failing,
            "ok": not problems,
            "problems": problems,
        }
