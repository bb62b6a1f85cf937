"""The ``HTTPRoute`` kind (Gateway API ``gateway.networking.k8s.io/v1``, GAMMA binding).

Only the subset a mesh uses is accepted; a field that plait
does not implement yet is rejected, never ignored. Limits follow the Gateway
API CRD: 16 rules, 64 matches per rule and 128 in total, 16 headers or query
params per match, 16 filters and 16 backendRefs per rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._fields import Fields, Loc
from ._model import HeaderMatch, MatchType, PathMatch, RouteMatch, Timeouts
from ._resources import LABEL, LABEL_HINT, SUBDOMAIN, SUBDOMAIN_HINT, FilterUse, Meta
from ._retry import RetryPolicy, parse_retry

__all__ = ["BackendRef", "HTTPRouteRes", "ParentRef", "RuleRes", "parse_httproute"]

# Gateway API's methods but CONNECT: no route carries a CONNECT tunnel (answered 501 before
# routing), so a match on it is refused rather than accepted and never matched.
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.1 field-name
_CORE_GROUP = ("", "core")
_TYPES = {t.value: t for t in MatchType}
# Gateway filter type → (its config key, registry type); ExtensionRef resolves a Filter.
_GATEWAY_FILTERS = {
    "RequestHeaderModifier": ("requestHeaderModifier", "request-header-modifier"),
    "ResponseHeaderModifier": ("responseHeaderModifier", "response-header-modifier"),
    "ExtensionRef": ("extensionRef", ""),
}
_NOT_YET = ("RequestMirror", "RequestRedirect", "URLRewrite", "CORS", "ExternalAuth")
CATCH_ALL = RouteMatch(path=PathMatch(type=MatchType.PREFIX, value="/"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRef:
    loc: Loc
    name: str
    namespace: str
    port: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRef:
    loc: Loc
    name: str
    namespace: str
    port: int
    weight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleRes:
    loc: Loc
    name: str | None
    matches: tuple[RouteMatch, ...]
    backends: tuple[BackendRef, ...]
    filters: tuple[FilterUse, ...]
    timeouts: Timeouts
    retry: RetryPolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRouteRes:
    meta: Meta
    parents: tuple[ParentRef, ...]
    rules: tuple[RuleRes, ...]


def parse_httproute(meta: Meta, spec: Fields) -> HTTPRouteRes:
    parents = tuple(_parse_parent(p, meta.namespace) for p in spec.maps("parentRefs", max_items=32))
    if not parents:
        raise spec.at("parentRefs").error("expected at least one parentRef (a Service)")
    rules = tuple(_parse_rule(r, meta.namespace) for r in spec.maps("rules", max_items=16))
    if sum(len(r.matches) for r in rules) > 128:
        raise spec.at("rules").error("expected at most 128 matches across all rules")
    spec.done()
    return HTTPRouteRes(meta=meta, parents=parents, rules=rules or (_default_rule(spec.loc),))


def _default_rule(loc: Loc) -> RuleRes:
    return RuleRes(
        loc=loc, name=None, matches=(CATCH_ALL,), backends=(), filters=(), timeouts=Timeouts()
    )


def _service_ref(f: Fields, namespace: str) -> tuple[str, str]:
    """``group``/``kind`` (core Service only), ``name`` and ``namespace`` of a reference."""
    if f.has("group") and f.raw["group"] not in _CORE_GROUP:
        raise f.at("group").expected('"" or core (Services are in the core group)', f.raw["group"])
    f.text("kind", "Service", choices=("Service",))
    name = f.text("name", pattern=LABEL, what=LABEL_HINT)
    return name, f.text("namespace", namespace, pattern=LABEL, what=LABEL_HINT)


def _parse_parent(f: Fields, namespace: str) -> ParentRef:
    name, ns = _service_ref(f, namespace)
    ref = ParentRef(loc=f.loc, name=name, namespace=ns, port=f.opt_integer("port", lo=1, hi=65535))
    f.done()
    return ref


def _parse_backend(f: Fields, namespace: str) -> BackendRef:
    name, ns = _service_ref(f, namespace)
    ref = BackendRef(
        loc=f.loc,
        name=name,
        namespace=ns,
        port=f.integer("port", lo=1, hi=65535),
        weight=f.integer("weight", 1, lo=0, hi=1_000_000),
    )
    f.done()
    return ref


def _parse_rule(f: Fields, namespace: str) -> RuleRes:
    name = f.opt_text("name", pattern=LABEL, what=LABEL_HINT)
    matches = tuple(_parse_match(m) for m in f.maps("matches", max_items=64))
    timeouts = Timeouts()
    if (t := f.sub("timeouts")) is not None:
        timeouts = Timeouts(
            request=t.opt_duration("request"), backend_request=t.opt_duration("backendRequest")
        )
        t.done()
        if (
            timeouts.request
            and timeouts.backend_request
            and timeouts.backend_request > timeouts.request
        ):
            raise t.at("backendRequest").error("expected at most timeouts.request")
    rule = RuleRes(
        loc=f.loc,
        name=name,
        matches=matches or (CATCH_ALL,),
        backends=tuple(_parse_backend(b, namespace) for b in f.maps("backendRefs", max_items=16)),
        filters=tuple(_parse_route_filter(x) for x in f.maps("filters", max_items=16)),
        timeouts=timeouts,
        retry=parse_retry(r) if (r := f.sub("retry")) is not None else None,
    )
    f.done()
    return rule


def _parse_match(f: Fields) -> RouteMatch:
    path = CATCH_ALL.path
    if (p := f.sub("path")) is not None:
        path = _parse_path(p)
    match = RouteMatch(
        path=path,
        headers=_parse_header_matches(f, "headers", lower=True),
        method=f.text("method", choices=_METHODS) if f.has("method") else None,
        query_params=_parse_header_matches(f, "queryParams", lower=False),
    )
    f.done()
    return match


def _parse_path(p: Fields) -> PathMatch:
    mtype = _TYPES[p.text("type", MatchType.PREFIX.value, choices=tuple(_TYPES))]
    value = p.text("value", "/")
    regex = None
    if mtype is MatchType.REGEX:
        regex = _compile(value, p.at("value"))
    elif not value.startswith("/") or "?" in value or "#" in value:
        raise p.at("value").expected("an absolute path starting with / (no ? or #)", value)
    p.done()
    return PathMatch(type=mtype, value=value, regex=regex)


def _parse_header_matches(f: Fields, key: str, *, lower: bool) -> tuple[HeaderMatch, ...]:
    out: list[HeaderMatch] = []
    for h in f.maps(key, max_items=16):
        name = h.text("name", pattern=_TOKEN, what="a header or parameter name")
        mtype = _TYPES[h.text("type", "Exact", choices=("Exact", "RegularExpression"))]
        value = h.text("value")
        h.done()
        if lower:
            name = name.lower()
        if any(m.name == name for m in out):
            raise h.at("name").error(f"duplicate name {name!r} in one match")
        regex = _compile(value, h.at("value")) if mtype is MatchType.REGEX else None
        out.append(HeaderMatch(name=name, type=mtype, value=value, regex=regex))
    return tuple(out)


def _compile(value: str, loc: Loc) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise loc.expected(f"a regular expression ({exc})", value) from None


def _parse_route_filter(f: Fields) -> FilterUse:
    supported = tuple(_GATEWAY_FILTERS)
    ftype = f.text("type")
    if ftype in _NOT_YET:
        raise f.at("type").error(
            f"filter type {ftype} is not supported yet (supported: {', '.join(supported)})"
        )
    if ftype not in _GATEWAY_FILTERS:
        raise f.at("type").expected("one of " + ", ".join(supported), ftype)
    key, registry_type = _GATEWAY_FILTERS[ftype]
    if not f.has(key):
        raise f.loc.error(f"missing required field {key!r} for type {ftype}")
    if not registry_type:
        ref = f.sub(key, required=True)
        assert ref is not None
        ref.text("group", choices=("plait.dev",))
        ref.text("kind", choices=("Filter",))
        use = FilterUse(
            loc=ref.at("name"), ref=ref.text("name", pattern=SUBDOMAIN, what=SUBDOMAIN_HINT)
        )
        ref.done()
    else:
        use = FilterUse(
            loc=f.at("type"), type=registry_type, config=f.raw_value(key), config_loc=f.at(key)
        )
    f.done()
    return use
