"""The ``PeerAuthentication`` and ``AuthorizationPolicy`` kinds (Istio's field names).

Which workload a policy applies to: plait's unit is the sidecar, so a ``selector``'s
``matchLabels`` are matched against the ``metadata.labels`` of the ``Sidecar`` resource a
sidecar runs. The mesh root namespace is :data:`ROOT_NAMESPACE`.

``PeerAuthentication`` (``spec.selector.matchLabels``, ``spec.mtls.mode`` STRICT |
PERMISSIVE | DISABLE | UNSET, ``spec.portLevelMtls: {PORT: {mode}}``): the most specific
policy wins — one with a selector matching the sidecar (in its namespace), else the one of
the sidecar's namespace without selector, else the mesh-wide one (root namespace, no
selector); among equals the oldest. ``UNSET`` inherits from the next less specific level.
``portLevelMtls`` (with a selector only, as Istio requires) is keyed by the inbound
listener's port. No policy at all leaves the mode unset (:attr:`ListenerConfig.mtls` is
``None``): PERMISSIVE once the sidecar has an identity, plaintext before.

``AuthorizationPolicy`` (``selector``, ``action`` ALLOW | DENY | AUDIT, ``rules[].from[]
.source.{principals, notPrincipals, namespaces, notNamespaces}``, ``rules[].to[].operation
.{paths, notPaths, methods, notMethods}``): checked here field by field, then handed to the
built-in ``authorization`` filter (``plait.filters.authz``) as its config, one entry per
policy that applies to the sidecar: those of the root namespace and of the sidecar's
namespace, without selector or with one that matches. Principals are Istio's
``<trust-domain>/ns/<ns>/sa/<sa>`` or full ``spiffe://`` IDs; principals and paths may be
exact, a prefix ``x*``, a suffix ``*x`` or ``*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._fields import Fields, Loc
from ._model import Direction, FilterEntry, ListenerConfig, MtlsMode
from ._resources import LABEL, LABEL_HINT, FilterUse, Meta, SidecarRes

if TYPE_CHECKING:
    from ._resource_set import Resources

__all__ = [
    "AUTHZ_FILTER",
    "ROOT_NAMESPACE",
    "AuthzRes",
    "PeerAuthRes",
    "authz_config",
    "mtls_for",
    "parse_authorization_policy",
    "parse_peer_authentication",
    "secure_listeners",
]

ROOT_NAMESPACE = "plait-system"
"""Policies here without a selector are mesh-wide (Istio's ``istio-system``)."""
AUTHZ_FILTER = "authorization"
"""The registry type of the filter that enforces AuthorizationPolicies."""
_MODES = ("STRICT", "PERMISSIVE", "DISABLE", "UNSET")
_ACTIONS = ("ALLOW", "DENY", "AUDIT")
_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_")


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return selector is None or all(labels.get(k) == v for k, v in selector.items())


def _selector(spec: Fields) -> dict[str, str] | None:
    sel = spec.sub("selector")
    if sel is None:
        return None
    match = sel.labels("matchLabels")
    sel.done()
    return match


# -- PeerAuthentication ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAuthRes:
    meta: Meta
    selector: dict[str, str] | None
    mode: MtlsMode | None
    """``None``: UNSET (inherit)."""
    ports: dict[int, MtlsMode | None]


def _mode(f: Fields) -> MtlsMode | None:
    text = f.text("mode", "UNSET", choices=_MODES)
    f.done()
    return None if text == "UNSET" else MtlsMode(text)


def parse_peer_authentication(meta: Meta, spec: Fields) -> PeerAuthRes:
    selector = _selector(spec)
    mtls = spec.sub("mtls")
    mode = _mode(mtls) if mtls is not None else None
    ports: dict[int, MtlsMode | None] = {}
    raw = spec.raw_value("portLevelMtls")
    if raw is not None:
        loc = spec.at("portLevelMtls")
        if not isinstance(raw, Mapping):
            raise loc.expected("a mapping of port numbers to {mode: ...}", raw)
        if selector is None:
            raise loc.error("portLevelMtls needs a selector (it applies to one workload)")
        for key, value in raw.items():
            port = int(key) if isinstance(key, int | str) and str(key).isdigit() else 0
            if not 1 <= port <= 65535:
                raise loc.key(str(key)).expected("a port number 1..65535", key)
            ports[port] = _mode(Fields({} if value is None else value, loc.key(str(key))))
    spec.done()
    return PeerAuthRes(meta=meta, selector=selector, mode=mode, ports=ports)


def mtls_for(
    policies: Iterable[PeerAuthRes], namespace: str, labels: Mapping[str, str], port: int
) -> MtlsMode | None:
    """The mode of the inbound listener on ``port`` of a sidecar (most specific wins)."""
    ordered = sorted(policies, key=lambda p: p.meta.order)
    workload = next(
        (
            p
            for p in ordered
            if p.selector is not None
            and p.meta.namespace == namespace
            and selects(p.selector, labels)
        ),
        None,
    )
    space = next((p for p in ordered if p.selector is None and p.meta.namespace == namespace), None)
    mesh = next(
        (p for p in ordered if p.selector is None and p.meta.namespace == ROOT_NAMESPACE), None
    )
    levels: list[MtlsMode | None] = []
    if workload is not None:
        levels += [workload.ports.get(port), workload.mode]
    for p in (space, mesh):
        if p is not None:
            levels.append(p.mode)
    return next((m for m in levels if m is not None), None)


# -- AuthorizationPolicy --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthzRes:
    meta: Meta
    selector: dict[str, str] | None
    action: str
    rules: tuple[dict[str, Any], ...]
    """Normalized: ``{"from": [{field: [values]}], "to": [{field: [values]}]}``."""


def _strings(f: Fields, key: str, check: Any) -> list[str] | None:
    items = f.items(key, max_items=1024)
    if not f.has(key):
        return None
    out = []
    for value, loc in items:
        if not isinstance(value, str) or not value:
            raise loc.expected("a non-empty string", value)
        check(value, loc)
        out.append(value)
    if not out:
        raise f.at(key).error("expected at least one value (omit the field to match any)")
    return out


def _pattern(value: str, loc: Loc) -> None:
    if "*" in value.strip("*") or (value.count("*") > 1 and value != "*"):
        raise loc.expected("an exact value, a prefix 'x*', a suffix '*x' or '*'", value)


def _principal(value: str, loc: Loc) -> None:
    _pattern(value, loc)
    body = value.removeprefix("spiffe://")
    if any(c.isspace() for c in body) or "://" in body:
        raise loc.expected("a principal like plait.local/ns/NAMESPACE/sa/ACCOUNT", value)


def _namespace(value: str, loc: Loc) -> None:
    _pattern(value, loc)
    if not LABEL.match(value.strip("*") or "a"):
        raise loc.expected(LABEL_HINT + " (or a pattern with *)", value)


def _path(value: str, loc: Loc) -> None:
    _pattern(value, loc)
    if not (value.startswith("/") or value.startswith("*")):
        raise loc.expected("a path starting with / (or a pattern with *)", value)


def _method(value: str, loc: Loc) -> None:
    if value != "*" and not set(value) <= _METHOD_CHARS:
        raise loc.expected("an upper-case HTTP method such as GET", value)


_SOURCE = (("principals", _principal), ("notPrincipals", _principal),
           ("namespaces", _namespace), ("notNamespaces", _namespace))  # fmt: skip
_OPERATION = (("paths", _path), ("notPaths", _path),
              ("methods", _method), ("notMethods", _method))  # fmt: skip


def _clauses(rule: Fields, key: str, inner: str, fields: Any) -> list[dict[str, list[str]]]:
    out = []
    for item in rule.maps(key, max_items=64):
        sub = item.sub(inner, required=True)
        assert sub is not None
        clause = {name: v for name, check in fields if (v := _strings(sub, name, check))}
        sub.done()
        item.done()
        out.append(clause)
    return out


def parse_authorization_policy(meta: Meta, spec: Fields) -> AuthzRes:
    selector = _selector(spec)
    action = spec.text("action", "ALLOW", choices=_ACTIONS)
    rules = []
    for rule in spec.maps("rules", max_items=256):
        parsed: dict[str, Any] = {}
        if frm := _clauses(rule, "from", "source", _SOURCE):
            parsed["from"] = frm
        if to := _clauses(rule, "to", "operation", _OPERATION):
            parsed["to"] = to
        rule.done()
        rules.append(parsed)
    spec.done()
    return AuthzRes(meta=meta, selector=selector, action=action, rules=tuple(rules))


def authz_config(
    policies: Iterable[AuthzRes], namespace: str, labels: Mapping[str, str]
) -> dict[str, Any] | None:
    """The ``authorization`` filter config for a sidecar, ``None`` if no policy applies."""
    chosen = [
        {"name": f"{p.meta.namespace}/{p.meta.name}", "action": p.action, "rules": list(p.rules)}
        for p in sorted(policies, key=lambda p: p.meta.order)
        if p.meta.namespace in (namespace, ROOT_NAMESPACE) and selects(p.selector, labels)
    ]
    return {"policies": chosen} if chosen else None


def secure_listeners(
    res: Resources,
    sidecar: SidecarRes,
    built: list[ListenerConfig],
    entry_of: Callable[[FilterUse, str], FilterEntry],
) -> list[ListenerConfig]:
    """The PeerAuthentication modes and the authorization filter on the inbound listeners.

    A listener with TLS files of its own keeps them and gets no mTLS mode; the filter goes
    first in the chains of the inbound HTTP listeners, and is the connection filter of the
    inbound ``tcp`` listeners (it decides connections there: ``plait.filters.authz``).
    """
    ns, labels = sidecar.meta.namespace, dict(sidecar.meta.labels)
    authz = authz_config(res.authorization_policies, ns, labels)
    entry = None
    if authz is not None:
        entry = entry_of(FilterUse(loc=sidecar.meta.loc, type=AUTHZ_FILTER, config=authz), ns)
    out = []
    for lc in built:
        if lc.direction is Direction.INBOUND:
            mtls = mtls_for(res.peer_authentications, ns, labels, lc.port)
            filters = lc.filters
            if entry is not None:
                filters = (entry, *filters)
            out.append(replace(lc, mtls=mtls if lc.tls is None else None, filters=filters))
        else:
            out.append(lc)
    return out
