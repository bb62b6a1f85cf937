"""The control plane's :class:`XdsSource`: the store's resources, translated per node.

Theory of operation: :meth:`MeshSource.run` follows the store by revision.
After every change it re-reads all resources (creation order = the store's
``create_revision``, the Gateway API "oldest wins" tie-breaker), parses them
with the static-mode parser and builds the **mesh-wide** config once (all
clusters and route tables, ``translate(listeners=False)``), encoded to xDS.
Per-node views are computed lazily and cached until the next change:

* a **plait sidecar** (node metadata ``plait.sidecar``/``plait.namespace``)
  gets the translator's output for its ``Sidecar`` resource — the very
  function static mode runs — and its wildcard Listener and Cluster sets are
  *scoped* to what its listeners reach (Istio's ``Sidecar`` scoping): route
  tables of its listeners, the clusters their rules and tcp listeners name;
* any **other xDS client** (gRPC proxyless, Envoy) asks for listeners by
  name, ``xds:///NAME[:PORT]``: each name that resolves to a Service port gets
  an API listener whose route configuration is the Service port's route table
  (a pass-through table when no HTTPRoute attaches to it).

Both translate in the control plane's trust domain (``--trust-domain``, the one its CA
issues in), so every Workload endpoint expects the SPIFFE ID its sidecar's certificate
carries.

Named route configurations and clusters resolve against the mesh-wide set, so
a cluster a route no longer names keeps being served while a client still
subscribes to it (make-before-break). A node whose config cannot be built (no
such Sidecar) gets an empty view and the reason in :attr:`node_errors`.
Endpoints the registry's health checks fail (:meth:`set_unhealthy`) are left
out of every view until they pass again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio

from plait.core.config import (
    MeshConfig,
    ParsedDocument,
    Resources,
    parse_stored,
    resources_of,
    translate,
)
from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ROUTE
from plait.sdk import DEFAULT_TRUST_DOMAIN, ConfigError, FilterSpec

from .store import Store
from .xds import NodeInfo
from .xds._encode import encode_api_listener, encode_mesh

__all__ = ["MeshSource", "sidecar_of"]

log = logging.getLogger("plait.controlplane")

Encoded = dict[str, dict[str, Any]]


def sidecar_of(node: NodeInfo) -> tuple[str, str] | None:
    """``(name, namespace)`` of the Sidecar resource a plait node runs, else ``None``."""
    meta = node.metadata.get("plait")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("sidecar"), str):
        return None
    return str(meta["sidecar"]), str(meta.get("namespace") or "default")


@dataclass(frozen=True, slots=True)
class _Built:
    revision: int
    resources: Resources
    mesh: MeshConfig | None
    encoded: Encoded


class MeshSource:
    def __init__(
        self,
        store: Store,
        filter_types: Mapping[str, FilterSpec[Any]],
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> None:
        self.store = store
        self.filter_types = filter_types
        self.trust_domain = trust_domain
        """The CA's: Workload endpoints expect ``spiffe://<trust_domain>/ns/<ns>/sa/<sa>``."""
        empty: Encoded = {t: {} for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT)}
        self._built = _Built(0, resources_of([], ["store"]), None, empty)
        self._revision = 0
        self._changed = anyio.Event()
        self._views: dict[Any, Encoded] = {}
        self.node_errors: dict[str, str] = {}
        self.build_error: str | None = None
        self._seen = 0
        """The store revision last looked at (built or not)."""
        self.unhealthy: frozenset[str] = frozenset()
        """``address:port`` of endpoints failing health checks: left out of every EDS."""

    # -- XdsSource ------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    async def wait_for(self, revision: int) -> int:
        while self._revision <= revision:
            await self._changed.wait()
        return self._revision

    def resources(
        self, node: NodeInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Any]:
        view = self._view(node, names if type_url == LISTENER else None)
        if names is None:
            return view.get(type_url, {})
        if type_url == LISTENER:
            return {n: m for n, m in view.get(LISTENER, {}).items() if n in names}
        # make-before-break: named routes/clusters resolve mesh-wide, plus the node's own
        mesh = self._built.encoded.get(type_url, {})
        own = view.get(type_url, {})
        return {n: own.get(n) or mesh[n] for n in names if n in own or n in mesh}

    # -- following the store ----------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self.rebuild()
        task_status.started()
        while True:
            await self.store.wait_for(self._seen)
            await self.rebuild()

    async def rebuild(self) -> None:
        revision = self._seen = self.store.revision
        stored = sorted(await self.store.list(), key=lambda r: r.create_revision)
        parsed: list[ParsedDocument] = []
        for i, item in enumerate(stored):
            try:
                parsed.append(parse_stored(item.document, f"store:{item.key}", order=i))
            except ConfigError as exc:  # stored before a schema change: skip it, say so
                log.error("skipping stored resource %s: %s", item.key, exc)
        try:
            res = resources_of(parsed, ["store"])
            mesh = translate(
                res,
                self.filter_types,
                unknown_filters=True,
                listeners=False,
                trust_domain=self.trust_domain,
            )
            mesh = _healthy(mesh, self.unhealthy)
            encoded = encode_mesh(mesh)
            self.build_error = None
        except ConfigError as exc:  # the API validates writes; this is a safety net
            log.error("cannot build the mesh at revision %d: %s", revision, exc)
            self.build_error = str(exc)
            return
        self._built = _Built(revision, res, mesh, encoded)
        self._views = {}
        self.node_errors = {}
        self._revision += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def set_unhealthy(self, endpoints: frozenset[str]) -> None:
        """The registry's health checks changed their verdict: rebuild and push."""
        if endpoints != self.unhealthy:
            self.unhealthy = endpoints
            await self.rebuild()

    # -- per-node views ---------------------------------------------------------------------

    def _view(self, node: NodeInfo, listener_names: frozenset[str] | None) -> Encoded:
        sidecar = sidecar_of(node)
        key: Any = sidecar if sidecar is not None else ("api", listener_names)
        view = self._views.get(key)
        if view is None:
            view = self._sidecar_view(node, sidecar) if sidecar else self._api_view(listener_names)
            self._views[key] = view
        return view

    def _sidecar_view(self, node: NodeInfo, sidecar: tuple[str, str]) -> Encoded:
        name, namespace = sidecar
        try:
            cfg = translate(
                self._built.resources,
                self.filter_types,
                sidecar=f"{name}.{namespace}",
                unknown_filters=True,
                trust_domain=self.trust_domain,
            )
        except ConfigError as exc:
            self.node_errors[node.id] = str(exc)
            log.warning("node %s: %s", node.id, exc)
            return {}
        tables = {lc.route_table for lc in cfg.listeners if lc.route_table}
        clusters = {lc.tcp_cluster for lc in cfg.listeners if lc.tcp_cluster}
        for table in tables:
            for rule in cfg.routes[table].rules:
                clusters |= {b.cluster for b in rule.backends}
        scoped = replace(
            cfg,
            clusters={n: c for n, c in cfg.clusters.items() if n in clusters},
            routes={n: t for n, t in cfg.routes.items() if n in tables},
        )
        return encode_mesh(_healthy(scoped, self.unhealthy))

    def _api_view(self, names: frozenset[str] | None) -> Encoded:
        mesh = self._built.mesh
        listeners: dict[str, Any] = {}
        if mesh is not None and names:
            for name in names:
                table = resolve_service(mesh, name)
                if table is not None:
                    listeners[name] = encode_api_listener(name, table)
        return {LISTENER: listeners}


def resolve_service(mesh: MeshConfig, name: str) -> str | None:
    """The route table (cluster) a gRPC target ``NAME[.NS][.svc...][:PORT]`` means."""
    host, _, port = name.partition(":")
    parts = host.split(".")
    svc, ns = parts[0], parts[1] if len(parts) > 1 else "default"
    prefix = f"{svc}.{ns}:"
    if port:
        return f"{prefix}{port}" if f"{prefix}{port}" in mesh.routes else None
    ports = sorted((n for n in mesh.routes if n.startswith(prefix)), key=lambda n: n)
    grpc_first = sorted(ports, key=lambda n: not mesh.clusters[n].protocol.upstream_h2)
    return grpc_first[0] if grpc_first else None


def _healthy(mesh: MeshConfig, unhealthy: frozenset[str]) -> MeshConfig:
    if not unhealthy:
        return mesh
    clusters = {
        name: replace(c, endpoints=tuple(e for e in c.endpoints if e.key not in unhealthy))
        for name, c in mesh.clusters.items()
    }
    return replace(mesh, clusters=clusters)
