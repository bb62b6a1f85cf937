"""HTTPRoutes → one ``RouteTable`` per Service port, in Gateway API precedence order.

Theory of operation: precedence is decided per *match*, not per rule (a rule
with an Exact match and a PathPrefix match has two different priorities), so
every rule is expanded into one ``RouteRule`` per match, and the table holds
them sorted by (Gateway API "HTTPRouteRule" precedence)::

    Exact path  >  PathPrefix, longest first  >  RegularExpression
    > has a method  > more header matches  > more query matches
    > older route (creation order = file order)  > rule order  > match order

so the router can stop at the first hit. Expanded rules share their filter
entries (frozen), so the expansion costs no filter state.

GAMMA binding (GEP-1294): routes in the Service's namespace are *producer*
routes; a route in the sidecar's own namespace attached to a Service of another
namespace is a *consumer* route, which replaces the producer routes for that
sidecar. Routes of other consumers' namespaces do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from ._fields import Loc
from ._httproute import CATCH_ALL, BackendRef, HTTPRouteRes, ParentRef, RuleRes
from ._model import (
    FilterEntry,
    MatchType,
    RouteMatch,
    RouteRule,
    RouteTable,
    WeightedBackend,
)
from ._resources import FilterUse, ServicePort, ServiceRes
from ._retry import RetryPolicy

__all__ = ["RouteTables", "catch_all_table", "cluster_name", "precedence"]

_PATH_RANK = {MatchType.EXACT: 0, MatchType.PREFIX: 1, MatchType.REGEX: 2}


class Refs(TypingProtocol):
    """What route building needs from the translator."""

    def service(self, name: str, namespace: str, loc: Loc) -> ServiceRes: ...

    def entry(self, use: FilterUse, namespace: str) -> FilterEntry: ...

    def split_entry(self, backends: tuple[WeightedBackend, ...], loc: Loc) -> FilterEntry: ...

    def resilience(
        self, backends: tuple[WeightedBackend, ...], retry: RetryPolicy | None, loc: Loc
    ) -> tuple[FilterEntry, ...]: ...


def cluster_name(svc: ServiceRes, port: ServicePort) -> str:
    return f"{svc.meta.name}.{svc.meta.namespace}:{port.port}"


def ports_text(svc: ServiceRes) -> str:
    return ", ".join(f"{p.port}/{p.protocol.value}" for p in svc.ports)


def precedence(match: RouteMatch, order: int, rule: int, index: int) -> tuple[int, ...]:
    """The sort key of one match: smaller wins."""
    path = match.path or CATCH_ALL.path
    assert path is not None
    length = 0
    if path.type is MatchType.PREFIX:
        length = len(path.value.rstrip("/"))  # "/a/" and "/a" are the same prefix
    elif path.type is MatchType.EXACT:
        length = len(path.value)
    return (
        _PATH_RANK[path.type],
        -length,
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query_params),
        order,
        rule,
        index,
    )


def catch_all_table(refs: Refs, key: str, cluster: str, loc: Loc) -> RouteTable:
    """One rule, ``PathPrefix /``, 100% to ``cluster``: traffic passes as if there were no mesh."""
    backends = (WeightedBackend(cluster=cluster, weight=1),)
    rule = RouteRule(
        name=key,
        matches=(CATCH_ALL,),
        backends=backends,
        filters=(refs.split_entry(backends, loc), *refs.resilience(backends, None, loc)),
    )
    return RouteTable(service=key, rules=(rule,))


@dataclass(slots=True)
class _Attached:
    route: HTTPRouteRes
    service: ServiceRes
    rules: list[tuple[tuple[int, ...], RouteRule]]


class RouteTables:
    """Collects routes per Service port, then builds the sorted tables."""

    def __init__(self, refs: Refs, sidecar_namespace: str | None) -> None:
        self.refs = refs
        self.sidecar_namespace = sidecar_namespace
        self._attached: dict[str, list[_Attached]] = {}

    def add(self, route: HTTPRouteRes) -> None:
        """Validate ``route`` (every rule, even if it applies to no sidecar) and attach it."""
        rules = [r for i, rule in enumerate(route.rules) for r in self._rule(route, i, rule)]
        for parent in route.parents:
            svc = self.refs.service(parent.name, parent.namespace, parent.loc)
            for port in self._parent_ports(svc, parent):
                self._attached.setdefault(cluster_name(svc, port), []).append(
                    _Attached(route, svc, rules)
                )

    def build(self) -> dict[str, RouteTable]:
        tables: dict[str, RouteTable] = {}
        for key, attached in self._attached.items():
            ns = attached[0].service.meta.namespace
            consumer = [a for a in attached if a.route.meta.namespace == self.sidecar_namespace]
            chosen = consumer or [a for a in attached if a.route.meta.namespace == ns]
            if chosen:
                rules = sorted((r for a in chosen for r in a.rules), key=lambda kr: kr[0])
                tables[key] = RouteTable(service=key, rules=tuple(r for _, r in rules))
        return tables

    def _parent_ports(self, svc: ServiceRes, parent: ParentRef) -> list[ServicePort]:
        ports = [p for p in svc.ports if parent.port in (None, p.port)]
        if not ports:
            raise parent.loc.key("port").error(
                f"Service {svc.meta.name} has no port {parent.port} (ports: {ports_text(svc)})"
            )
        http = [p for p in ports if p.protocol.is_http]
        if not http:
            raise parent.loc.error(
                f"an HTTPRoute cannot attach to Service {svc.meta.name}: no HTTP port "
                f"(ports: {ports_text(svc)})"
            )
        return http

    def _rule(
        self, route: HTTPRouteRes, i: int, rule: RuleRes
    ) -> list[tuple[tuple[int, ...], RouteRule]]:
        ns = route.meta.namespace
        backends = tuple(self._backend(b) for b in rule.backends)
        filters = tuple(self.refs.entry(u, ns) for u in rule.filters)
        if backends:
            filters += (self.refs.split_entry(backends, rule.loc.key("backendRefs")),)
        filters += self.refs.resilience(backends, rule.retry, rule.loc.key("retry"))
        name = f"{ns}/{route.meta.name}/{rule.name or i}"
        return [
            (
                precedence(m, route.meta.order, i, j),
                RouteRule(
                    name=name,
                    matches=(m,),
                    backends=backends,
                    filters=filters,
                    timeouts=rule.timeouts,
                    retry=rule.retry,
                ),
            )
            for j, m in enumerate(rule.matches)
        ]

    def _backend(self, ref: BackendRef) -> WeightedBackend:
        svc = self.refs.service(ref.name, ref.namespace, ref.loc)
        port = next((p for p in svc.ports if p.port == ref.port), None)
        if port is None or not port.protocol.is_http:
            problem = "no port" if port is None else "a tcp port at"
            raise ref.loc.key("port").error(
                f"Service {svc.meta.name} has {problem} {ref.port} (ports: {ports_text(svc)})"
            )
        return WeightedBackend(cluster=cluster_name(svc, port), weight=ref.weight)
