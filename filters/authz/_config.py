"""Config of ``authorization``: policies compiled into matchers once per config snapshot.

``{policies: [{name: NS/NAME, action: ALLOW|DENY|AUDIT, rules: [{from: [{principals,
notPrincipals, namespaces, notNamespaces}], to: [{paths, notPaths, methods,
notMethods}]}]}]}`` — the shape the translator builds from ``AuthorizationPolicy``
resources (``from``/``to`` items hold the fields of Istio's ``source``/``operation``).

Matching is Istio's: a policy matches a request when one of its rules does; a rule
matches when one of its ``from`` clauses and one of its ``to`` clauses match (an absent
list matches anything); a clause matches when every field it sets does: ``principals``
when one value matches, ``notPrincipals`` when none does, and so on. A value is exact,
a prefix ``x*``, a suffix ``*x`` or ``*`` (anything present). Principals compare
without the ``spiffe://`` scheme (``plait.local/ns/web/sa/web``), so both spellings
work. A request without a verified SPIFFE ID has no principal and no namespace: no
``principals``/``namespaces`` value matches it and every ``notPrincipals``/
``notNamespaces`` clause does (as in Istio, ``notPrincipals: ["*"]`` means "no
identity"). Paths are matched normalized (``plait.filters._paths``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.filters._validate import ConfigReader
from plait.sdk import ConfigError

__all__ = ["AuthzConfig", "Clause", "Policy", "Request", "parse_authz"]

ACTIONS = ("ALLOW", "DENY", "AUDIT")
_SOURCE = ("principals", "notPrincipals", "namespaces", "notNamespaces")
_OPERATION = ("paths", "notPaths", "methods", "notMethods")


@dataclass(frozen=True, slots=True)
class Request:
    """What rules look at: principal (no scheme), namespace, normalized path, method."""

    principal: str | None
    namespace: str | None
    path: str
    method: str


class Values:
    """One list of patterns, compiled: a set of exact values, prefixes, suffixes, any."""

    __slots__ = ("any", "exact", "patterns", "prefixes", "suffixes")

    def __init__(self, patterns: list[str], strip: Callable[[str], str]) -> None:
        pats = [strip(p) for p in patterns]
        self.patterns = tuple(pats)
        self.any = "*" in pats
        self.exact = frozenset(p for p in pats if "*" not in p)
        self.prefixes = tuple(p[:-1] for p in pats if p.endswith("*") and p != "*")
        self.suffixes = tuple(p[1:] for p in pats if p.startswith("*") and p != "*")

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        return (
            self.any
            or value in self.exact
            or value.startswith(self.prefixes)
            or value.endswith(self.suffixes)
        )


def _scheme(p: str) -> str:
    return p.removeprefix("spiffe://")


def _same(p: str) -> str:
    return p


_FIELD = {  # field → (request attribute, negated, normalization)
    "principals": ("principal", False, _scheme),
    "notPrincipals": ("principal", True, _scheme),
    "namespaces": ("namespace", False, _same),
    "notNamespaces": ("namespace", True, _same),
    "paths": ("path", False, _same),
    "notPaths": ("path", True, _same),
    "methods": ("method", False, _same),
    "notMethods": ("method", True, _same),
}


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``source`` or ``operation``: every field it sets must match."""

    fields: Mapping[str, tuple[str, ...]]
    """As configured (what ``/config_dump`` shows and equality compares)."""
    checks: tuple[tuple[str, bool, Values], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = tuple(
            (_FIELD[k][0], _FIELD[k][1], Values(list(v), _FIELD[k][2]))
            for k, v in self.fields.items()
        )
        object.__setattr__(self, "checks", checks)

    def __hash__(self) -> int:
        return hash(tuple(self.fields.items()))

    def __call__(self, req: Request) -> bool:
        return all(values(getattr(req, attr)) != negated for attr, negated, values in self.checks)


@dataclass(frozen=True, slots=True)
class Rule:
    sources: tuple[Clause, ...] | None
    operations: tuple[Clause, ...] | None

    def __call__(self, req: Request) -> bool:
        return (self.sources is None or any(c(req) for c in self.sources)) and (
            self.operations is None or any(c(req) for c in self.operations)
        )


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    action: str
    rules: tuple[Rule, ...]

    def matches(self, req: Request) -> bool:
        return any(rule(req) for rule in self.rules)


@dataclass(frozen=True, slots=True)
class AuthzConfig:
    deny: tuple[Policy, ...]
    allow: tuple[Policy, ...]
    audit: tuple[Policy, ...]


def _pattern(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a non-empty string, got {value!r}", field=field)
    if "*" in value.strip("*") or (value.count("*") > 1 and value != "*"):
        raise ConfigError(
            f"expected an exact value, a prefix 'x*', a suffix '*x' or '*', got {value!r}",
            field=field,
        )
    return value


def _clauses(r: ConfigReader, key: str, names: tuple[str, ...]) -> tuple[Clause, ...] | None:
    if r.value(key, None) is None:
        return None
    out = []
    for c in r.maps(key, max_items=64):
        fields: dict[str, tuple[str, ...]] = {}
        for name in names:
            raw = c.value(name, None)
            if raw is None:
                continue
            if not isinstance(raw, list) or not raw:
                raise ConfigError(f"expected a non-empty list, got {raw!r}", field=c.at(name))
            fields[name] = tuple(_pattern(v, f"{c.at(name)}[{i}]") for i, v in enumerate(raw))
        c.done()
        out.append(Clause(fields))
    return tuple(out)


def parse_authz(raw: Mapping[str, Any]) -> AuthzConfig:
    """Parse, validate and compile; raises :class:`ConfigError` naming the field."""
    r = ConfigReader(raw)
    policies = []
    for p in r.maps("policies", max_items=1024):
        name = p.text("name")
        action = p.text("action", "ALLOW")
        if action not in ACTIONS:
            raise ConfigError(
                f"expected one of {', '.join(ACTIONS)}, got {action!r}", field=p.at("action")
            )
        rules = []
        for rr in p.maps("rules", max_items=256):
            rules.append(Rule(_clauses(rr, "from", _SOURCE), _clauses(rr, "to", _OPERATION)))
            rr.done()
        p.done()
        policies.append(Policy(name, action, tuple(rules)))
    r.done()
    return AuthzConfig(
        deny=tuple(p for p in policies if p.action == "DENY"),
        allow=tuple(p for p in policies if p.action == "ALLOW"),
        audit=tuple(p for p in policies if p.action == "AUDIT"),
    )
