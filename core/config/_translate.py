"""Resources → :class:`MeshConfig`: cross-references, filter types, route precedence.

Theory of operation:

* Each ``Service`` port becomes a ``Cluster`` ``"<name>.<ns>:<port>"``; its Workloads'
  endpoints carry their SPIFFE IDs in ``trust_domain`` (``_workload.py``).
* ``Filter`` resources and every listener/rule filter are checked against the
  registry here: the type must exist and ``spec.parse_config`` must accept the
  config; a :class:`ConfigError` it raises is re-located under the YAML field.
* HTTPRoutes attached to a Service port are merged into one ``RouteTable`` per
  port (``_routes.py`` orders them by Gateway API precedence). A Service that
  an egress listener targets and no route attaches to gets a pass-through table
  (GAMMA: "no Routes, no mesh").
* The selected ``Sidecar`` gives the listeners, each with its chain, and its access log
  and tracing, unless ``Telemetry`` resources cover it (``_telemetry.py``). Its inbound
  listeners get their peer-authentication mode from the ``PeerAuthentication``s that
  apply, and, when ``AuthorizationPolicy``s apply to it, the built-in ``authorization``
  filter first in their chain (``_security.py``).

The core routes only by rule; the translator appends the ``weighted-split``
filter, built through the registry like any other filter, to pick the backend, and
puts the ``authorization`` filter in front of inbound chains the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from plait.sdk import DEFAULT_TRUST_DOMAIN, ConfigError, FilterSpec, HttpFilter

from ._attach import attach_filters
from ._fields import Loc
from ._filter_config import check_version, parse_filter_config, parse_specifier
from ._model import (
    AdminConfig,
    Cluster,
    Direction,
    FilterEntry,
    ListenerConfig,
    MeshConfig,
    Protocol,
    RouteTable,
    WeightedBackend,
)
from ._resilience import apply_policies, resilience_entries
from ._resource_set import Resources
from ._resources import FilterUse, ListenerRes, Meta, ServicePort, ServiceRes, SidecarRes
from ._retry import RetryPolicy
from ._routes import RouteTables, catch_all_table, cluster_name, ports_text
from ._security import secure_listeners
from ._telemetry import check_providers, telemetry_for
from ._wasm_spec import module_config, module_error
from ._workload import WorkloadRes, workload_endpoints

__all__ = ["WEIGHTED_SPLIT", "split_entry", "translate"]

WEIGHTED_SPLIT = "weighted-split"
"""The registry type the translator appends to every rule to choose the backend."""

R = TypeVar("R")


def translate(
    res: Resources,
    filter_types: Mapping[str, FilterSpec[Any]],
    *,
    sidecar: str | None = None,
    unknown_filters: bool = False,
    listeners: bool = True,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
) -> MeshConfig:
    """Build the frozen config; raises :class:`ConfigError` for any invalid reference.

    ``unknown_filters=True`` (the control plane, whose registry need not hold every
    sidecar's plugins) accepts filter types this registry does not know: their entries
    carry the type and raw config only (``FilterEntry.known`` is false) and the sidecars
    decide; known types are still checked here. It also names a ``spec.wasm`` Filter's
    module by its sha256 only (the control plane serves it; static mode gives the sidecar
    the file's path). ``listeners=False`` builds the mesh-wide
    part only (clusters and route tables; no Sidecar is selected), with a pass-through
    table for every HTTP Service port no HTTPRoute attaches to (what a gRPC proxyless
    client asking for that Service gets; GAMMA: no routes, no mesh). ``trust_domain`` is
    the mesh's: Workload endpoints expect ``spiffe://<trust_domain>/ns/<ns>/sa/<sa>``.
    """
    return _Translator(res, filter_types, unknown_filters, trust_domain).build(
        sidecar, listeners=listeners
    )


def _opaque_make(config: object) -> HttpFilter:
    raise ConfigError("filter type not installed here (a placeholder from the control plane)")


def split_entry(
    filter_types: Mapping[str, FilterSpec[Any]],
    backends: tuple[WeightedBackend, ...],
    loc: Loc | None = None,
) -> FilterEntry:
    """The ``weighted-split`` entry that sends a rule's traffic to ``backends``."""
    loc = loc or Loc("<generated>")
    spec = filter_types.get(WEIGHTED_SPLIT)
    if spec is None:
        raise loc.error(
            f"filter type {WEIGHTED_SPLIT!r} is not registered (are plait's built-in "
            "filters installed? the 'builtin' entry point of group plait.filters)"
        )
    raw = {"backends": [{"cluster": b.cluster, "weight": b.weight} for b in backends]}
    return FilterEntry(
        name=WEIGHTED_SPLIT,
        spec=spec,
        config=parse_filter_config(spec, raw, loc),
        type=WEIGHTED_SPLIT,
        raw_config=raw,
    )


def _index(items: Iterable[R], meta_of: Any) -> dict[tuple[str, str], R]:
    out: dict[tuple[str, str], R] = {}
    for item in items:
        meta: Meta = meta_of(item)
        if (first := out.get(meta.key)) is not None:
            first_loc = meta_of(first).loc
            raise meta.loc.error(
                f"duplicate {meta.kind} {meta.namespace}/{meta.name} "
                f"(first defined at {first_loc.file_line})"
            )
        out[meta.key] = item
    return out


class _Translator:
    def __init__(
        self,
        res: Resources,
        filter_types: Mapping[str, FilterSpec[Any]],
        unknown: bool = False,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> None:
        self.res = res
        self.filter_types = filter_types
        self.unknown_filters = unknown
        self.services = _index(res.services, lambda s: s.meta)
        _index(res.routes, lambda r: r.meta)
        self.sidecars = _index(res.sidecars, lambda s: s.meta)
        self.filter_res = _index(res.filters, lambda f: f.meta)
        self.filters = {key: self.entry(f.use, key[0]) for key, f in self.filter_res.items()}
        workloads = list(res.workloads)
        for w in workloads:
            self.check_workload(w)
        self.clusters: dict[str, Cluster] = {
            cluster_name(s, p): Cluster(
                name=cluster_name(s, p),
                protocol=p.protocol,
                endpoints=(*s.endpoints, *workload_endpoints(s, p.port, workloads, trust_domain)),
            )
            for s in res.services
            for p in s.ports
        }
        _index(res.policies, lambda p: p.meta)
        _index(res.peer_authentications, lambda p: p.meta)
        _index(res.authorization_policies, lambda p: p.meta)
        apply_policies(res.policies, self.service, self.clusters)

    # -- lookups ----------------------------------------------------------------------------

    def service(self, name: str, namespace: str, loc: Loc) -> ServiceRes:
        svc = self.services.get((namespace, name))
        if svc is None:
            known = ", ".join(f"{ns}/{n}" for ns, n in self.services) or "none"
            raise loc.error(f"unknown Service {namespace}/{name} (known: {known})")
        return svc

    def entry(self, use: FilterUse, namespace: str) -> FilterEntry:
        """A chain entry from a listener or rule filter (or a ``Filter`` resource)."""
        if use.ref is not None:
            found = self.filters.get((namespace, use.ref))
            if found is None:
                known = ", ".join(n for ns, n in self.filter_res if ns == namespace) or "none"
                raise use.loc.error(
                    f"unknown Filter {use.ref!r} in namespace {namespace} (known: {known})"
                )
            return found
        assert use.type is not None
        config = module_config(use, by_hash=self.unknown_filters)
        raw = json.loads(json.dumps(config, default=str))
        spec = self.filter_types.get(use.type)
        if spec is None:
            if self.unknown_filters:  # (the sidecars check the type, config and version)
                if use.version is not None:
                    parse_specifier(use.version, use.loc)
                opaque: FilterSpec[Any] = FilterSpec(name=use.type, make=_opaque_make)
                return FilterEntry(
                    name=use.name or use.type,
                    spec=opaque,
                    config=None,
                    fail_strategy=use.fail_strategy,
                    type=use.type,
                    raw_config=raw,
                    known=False,
                    version=use.version or "",
                )
            known = ", ".join(sorted(self.filter_types)) or "none"
            raise use.loc.error(f"unknown filter type {use.type!r} (known: {known})")
        if use.version is not None:
            check_version(spec, use.version, use.loc)
        try:
            parsed = parse_filter_config(spec, config, use.config_loc or use.loc)
        except ConfigError as err:
            raise module_error(use, err) from None
        return FilterEntry(
            name=use.name or spec.name,
            spec=spec,
            config=parsed,
            fail_strategy=use.fail_strategy,
            type=use.type,
            raw_config=raw,
            version=use.version or "",
        )

    def split_entry(self, backends: tuple[WeightedBackend, ...], loc: Loc) -> FilterEntry:
        return split_entry(self.filter_types, backends, loc)

    def check_workload(self, w: WorkloadRes) -> None:
        svc = self.service(w.service, w.meta.namespace, w.meta.loc.key("spec").key("service"))
        for p in w.ports:
            if not any(sp.port == p.port for sp in svc.ports):
                raise (
                    w.meta.loc.key("spec")
                    .key("ports")
                    .error(
                        f"Service {svc.meta.name} has no port {p.port} (ports: {ports_text(svc)})"
                    )
                )

    def resilience(
        self, backends: tuple[WeightedBackend, ...], retry: RetryPolicy | None, loc: Loc
    ) -> tuple[FilterEntry, ...]:
        """The retry / circuit-breaker / load-balancer layers for a rule (``_resilience.py``)."""
        return resilience_entries(self.filter_types, self.clusters, backends, retry, loc)

    # -- the whole config -------------------------------------------------------------------

    def build(self, sidecar_name: str | None, *, listeners: bool = True) -> MeshConfig:
        sidecar = self.select_sidecar(sidecar_name) if listeners else None
        tables = RouteTables(self, sidecar.meta.namespace if sidecar else None)
        for route in self.res.routes:
            tables.add(route)
        routes = tables.build()
        built = self.listeners(sidecar, routes) if sidecar else []
        if not listeners:
            for svc in self.res.services:
                for port in svc.ports:
                    name = cluster_name(svc, port)
                    if port.protocol.is_http and name not in routes:
                        routes[name] = catch_all_table(self, name, name, svc.meta.loc)
        key = f"{sidecar.meta.namespace}/{sidecar.meta.name}" if sidecar else ""
        check_providers(self.res.telemetries)
        telemetry = telemetry_for(self.res.telemetries, sidecar) if sidecar else None
        if telemetry is not None:
            on = {Direction.OUTBOUND: telemetry.metrics_client,
                  Direction.INBOUND: telemetry.metrics_server}  # fmt: skip
            built = [
                lis if on[lis.direction] else replace(lis, request_metrics=False) for lis in built
            ]
        return MeshConfig(
            version=hashlib.sha256(f"{self.res.digest}|{key}".encode()).hexdigest()[:12],
            listeners=tuple(built),
            clusters=dict(self.clusters),
            routes=routes,
            sources=self.res.sources,
            admin=sidecar.admin if sidecar else AdminConfig(),
            max_request_headers_kb=sidecar.max_request_headers_kb if sidecar else 60,
            access_log=telemetry.access_log if telemetry else None,
            access_log_sampling=telemetry.access_log_sampling if telemetry else 100.0,
            tracing=telemetry.tracing if telemetry else None,
        )

    def select_sidecar(self, name: str | None) -> SidecarRes | None:
        sidecars = list(self.sidecars.values())
        known = ", ".join(f"{s.meta.name}.{s.meta.namespace}" for s in sidecars) or "none"
        where = ", ".join(self.res.sources)
        if name is None:
            if len(sidecars) > 1:
                raise ConfigError(
                    f"{len(sidecars)} Sidecar resources ({known}): "
                    "choose one with --sidecar NAME or NAME.NAMESPACE",
                    file=where,
                )
            return sidecars[0] if sidecars else None
        found = [s for s in sidecars if name in (s.meta.name, f"{s.meta.name}.{s.meta.namespace}")]
        if len(found) == 1:
            return found[0]
        problem = "is ambiguous, use NAME.NAMESPACE" if found else "does not exist"
        raise ConfigError(
            f"Sidecar {name!r} {problem} (Sidecars: {known})", file=where, field="--sidecar"
        )

    # -- listeners --------------------------------------------------------------------------

    def listeners(self, sidecar: SidecarRes, routes: dict[str, RouteTable]) -> list[ListenerConfig]:
        out: list[ListenerConfig] = []
        seen: dict[int, ListenerRes] = {}
        for lis in sidecar.listeners:
            if (other := seen.get(lis.port)) is not None:
                raise lis.loc.error(
                    f"duplicate listener port {lis.port} (also used by listener {other.name!r})"
                )
            if lis.port == sidecar.admin.port:
                raise lis.loc.error(f"listener port {lis.port} is the admin port")
            if any(o.name == lis.name for o in out):
                raise lis.loc.error(f"duplicate listener name {lis.name!r}")
            seen[lis.port] = lis
            out.append(self.listener(lis, sidecar.meta.namespace, routes))
        out = secure_listeners(self.res, sidecar, out, self.entry)
        return attach_filters(self.res.filters, sidecar, out, self.filters)

    def listener(
        self, lis: ListenerRes, namespace: str, routes: dict[str, RouteTable]
    ) -> ListenerConfig:
        if lis.direction is Direction.OUTBOUND:
            assert lis.service is not None
            name, _, ns = lis.service.partition(".")
            svc = self.service(name, ns or namespace, lis.loc.key("service"))
            target = cluster_name(svc, self.pick_port(svc, lis))
            if lis.protocol.is_http and target not in routes:
                routes[target] = catch_all_table(self, target, target, lis.loc)
        else:
            assert lis.default_endpoint is not None
            target = f"inbound|{lis.port}"
            self.clusters[target] = Cluster(
                name=target, protocol=lis.protocol, endpoints=(lis.default_endpoint,)
            )
            if lis.protocol.is_http:
                routes[target] = catch_all_table(self, target, target, lis.loc)
        tcp = lis.protocol is Protocol.TCP
        if tcp and lis.filters:
            raise lis.loc.key("filters").error(
                "a tcp listener takes no filters (bytes are relayed)"
            )
        return ListenerConfig(
            name=lis.name,
            direction=lis.direction,
            bind=lis.bind,
            port=lis.port,
            protocol=lis.protocol,
            route_table="" if tcp else target,
            filters=tuple(self.entry(u, namespace) for u in lis.filters),
            timeouts=lis.timeouts,
            tcp_cluster=target if tcp else None,
            tls=lis.tls,
        )

    def pick_port(self, svc: ServiceRes, lis: ListenerRes) -> ServicePort:
        """``servicePort``, else the first port of the same protocol, else of a compatible one."""
        fits = [p for p in svc.ports if p.protocol.is_http == lis.protocol.is_http]
        if lis.service_port is not None:
            port = next((p for p in svc.ports if p.port == lis.service_port), None)
            if port is None or port not in fits:
                problem = "no such port" if port is None else f"a {port.protocol.value} port"
                raise lis.loc.key("servicePort").error(
                    f"Service {svc.meta.name} port {lis.service_port}: {problem} for a "
                    f"{lis.protocol.value} listener (ports: {ports_text(svc)})"
                )
            return port
        same = [p for p in fits if p.protocol is lis.protocol]
        if not (same or fits):
            raise lis.loc.key("service").error(
                f"Service {svc.meta.name} has no port usable by a {lis.protocol.value} "
                f"listener (ports: {ports_text(svc)})"
            )
        return (same or fits)[0]
