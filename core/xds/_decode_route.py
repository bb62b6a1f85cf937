"""``envoy.config.route.v3.RouteConfiguration`` → ``RouteTable`` (the inverse of the encoder's).

Regrouping: consecutive Routes with the same ``metadata.plait.rule`` index form one
``RouteRule`` (they must agree on name, action, filters and timeouts); within it,
consecutive Routes with the same ``match`` index form one ``RouteMatch``: a single Route, or
the pair ``path: P`` + ``prefix: P/`` that carries the element-wise ``PathPrefix P``. A
Route without plait metadata is a rule of its own. A lone ``prefix`` other than ``/`` is
refused: it is character-wise (``/a`` would match ``/ab``) and plait's router only matches
path prefixes element-wise, as Gateway API defines them.

The rule's filters come from ``metadata.plait.filters``; the ``weighted-split`` entry that
picks the backend is rebuilt from the action (``split_entry``) and inserted at
``metadata.plait.split`` (last when absent), before the resilience layers as the translator
puts it. The rule's ``retry`` is ``metadata.plait.retry`` parsed by ``parse_retry``; the
action's ``retry_policy`` must be exactly what it and the per-try timeout give.
Regular expressions are compiled with Python's ``re`` (the wire says RE2; the common subset
behaves the same).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from plait.core.config import (
    FilterEntry,
    HeaderMatch,
    MatchType,
    PathMatch,
    RouteMatch,
    RouteRule,
    RouteTable,
    WeightedBackend,
    split_entry,
)
from plait.core.config._fields import Loc
from plait.core.config._retry import RetryPolicy
from plait.sdk import FilterSpec

from ._decode_base import Message, at, decode_filter, fact, facts_of, only, sub, timeouts
from ._resilience import retry_from_facts, retry_policy
from .wire import seconds

__all__ = ["decode_route_config"]

_Route = tuple[Loc, Message, dict[str, Any]]
"""A Route with its location and plait facts."""
_RULE_KEYS = frozenset({"filters", "timeouts", "rule", "split", "retry"})
_FILTER_KEYS = frozenset({"name", "type", "config", "failStrategy"})


def decode_route_config(
    msg: Message, filter_types: Mapping[str, FilterSpec[Any]]
) -> tuple[RouteTable, set[str]]:
    """The table and the clusters its actions name. Raises ``ConfigError``."""
    loc = at(f"RouteConfiguration {msg.name}")
    only(msg, ("name", "virtual_hosts", "metadata"), loc)
    service = fact(facts_of(msg, loc), "service", str, str(msg.name), loc)
    if len(msg.virtual_hosts) != 1:
        raise sub(loc, "virtual_hosts").expected("one virtual host", len(msg.virtual_hosts))
    vhost = msg.virtual_hosts[0]
    vloc = sub(loc, "virtual_hosts[0]")
    only(vhost, ("name", "domains", "routes"), vloc)
    if list(vhost.domains) != ["*"]:
        raise sub(vloc, "domains").expected('["*"]', list(vhost.domains))
    groups: list[tuple[object, list[_Route]]] = []
    for i, route in enumerate(vhost.routes):
        rloc = sub(vloc, f"routes[{i}] {route.name!r}")
        only(route, ("name", "match", "route", "direct_response", "metadata"), rloc)
        facts = facts_of(route, rloc)
        key = fact(facts, "rule", int, -1 - i, rloc)
        if groups and groups[-1][0] == key:
            groups[-1][1].append((rloc, route, facts))
        elif any(k == key for k, _ in groups):
            raise rloc.error(f"the Routes of rule {key} are not consecutive")
        else:
            groups.append((key, [(rloc, route, facts)]))
    clusters: set[str] = set()
    rules = tuple(_rule(routes, filter_types, clusters) for _, routes in groups)
    return RouteTable(service=service, rules=rules), clusters


def _rule(
    routes: list[_Route],
    filter_types: Mapping[str, FilterSpec[Any]],
    clusters: set[str],
) -> RouteRule:
    loc, first, facts = routes[0]
    rule_facts = {k: v for k, v in facts.items() if k in _RULE_KEYS}
    for rloc, route, f in routes[1:]:
        same = {k: v for k, v in f.items() if k in _RULE_KEYS} == rule_facts
        if not same or route.name != first.name or not _same_action(route, first):
            raise rloc.error("Routes of one rule must agree on name, action and filters")
    retry = None
    if "retry" in facts:
        retry = retry_from_facts(facts["retry"], sub(loc, "metadata.plait.retry"))
    backends, request, per_try = _action(first, retry, loc)
    clusters.update(b.cluster for b in backends)
    filters: list[FilterEntry] = []
    for k, raw in enumerate(fact(facts, "filters", list, [], loc)):
        floc = sub(loc, f"metadata.plait.filters[{k}]")
        name = _filter_name(raw, floc)
        floc = sub(loc, f"metadata.plait.filters[{k}] {name!r}")
        filters.append(decode_filter(raw, name, filter_types, floc, _FILTER_KEYS))
    split = fact(facts, "split", int, len(filters), loc)  # absent: last (older encoders)
    if backends:
        if not 0 <= split <= len(filters):
            raise sub(loc, "metadata.plait.split").expected(
                f"an index among the rule's {len(filters) + 1} filters", split
            )
        filters.insert(split, split_entry(filter_types, backends, sub(loc, "route")))
    elif "split" in facts:
        raise sub(loc, "metadata.plait.split").error("a rule without backends has no split")
    standard = {"request": request, "backend_request": per_try}
    return RouteRule(
        name=first.name,
        matches=tuple(_match(group) for group in _match_groups(routes)),
        backends=backends,
        filters=tuple(filters),
        timeouts=timeouts(standard, facts, loc),
        retry=retry,
    )


def _filter_name(raw: object, loc: Loc) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(name, str) or not name:
        raise loc.expected("a filter with a name", raw)
    return name


def _same_action(a: Message, b: Message) -> bool:
    return bool(a.route == b.route and a.direct_response == b.direct_response)


def _action(
    route: Message, retry: RetryPolicy | None, loc: Loc
) -> tuple[tuple[WeightedBackend, ...], float | None, float | None]:
    """(backends, request timeout, per-try timeout) of a Route's action.

    ``retry_policy`` must be exactly what ``retry`` (the rule's, from the facts) and the
    per-try timeout give (``_resilience.retry_policy``): it mirrors them for Envoy and gRPC.
    """
    kind = route.WhichOneof("action")
    if kind == "direct_response":
        dr = route.direct_response
        only(dr, ("status",), sub(loc, "direct_response"))
        if dr.status != 500:
            raise sub(loc, "direct_response.status").expected(
                "500 (a rule without backends)", dr.status
            )
        return (), None, None
    if kind != "route":
        raise loc.expected("a route or a direct_response 500 action", kind)
    action = route.route
    aloc = sub(loc, "route")
    only(action, ("cluster", "weighted_clusters", "timeout", "retry_policy"), aloc)
    request = None  # absent, or 0s: no timeout
    if action.HasField("timeout") and (timeout := seconds(action.timeout)):
        request = timeout
    per_try = None
    if action.HasField("retry_policy"):
        rp = action.retry_policy
        rloc = sub(aloc, "retry_policy")
        mirrored = ("num_retries", "retry_on", "retriable_status_codes", "retry_back_off")
        only(rp, ("per_try_timeout", *(mirrored if retry is not None else ())), rloc)
        if rp.HasField("per_try_timeout"):
            per_try = seconds(rp.per_try_timeout)
    want = retry_policy(retry, per_try)
    got = action.retry_policy if action.HasField("retry_policy") else None
    if got != want:
        raise sub(aloc, "retry_policy").error(
            "does not match the rule's retry (metadata.plait.retry): "
            f"expected {_text(want)}, got {_text(got)}"
        )
    spec = action.WhichOneof("cluster_specifier")
    if spec == "cluster":
        return (WeightedBackend(cluster=action.cluster, weight=1),), request, per_try
    if spec != "weighted_clusters":
        raise aloc.expected("cluster or weighted_clusters", spec)
    wloc = sub(aloc, "weighted_clusters")
    only(action.weighted_clusters, ("clusters",), wloc)
    backends = []
    for k, cw in enumerate(action.weighted_clusters.clusters):
        only(cw, ("name", "weight"), sub(wloc, f"clusters[{k}]"))
        weight = cw.weight.value if cw.HasField("weight") else 1
        backends.append(WeightedBackend(cluster=cw.name, weight=weight))
    return tuple(backends), request, per_try


def _text(msg: Message | None) -> str:
    if msg is None:
        return "none"
    return " ".join(str(msg).split()) or "{}"


def _match_groups(routes: list[_Route]) -> list[list[_Route]]:
    groups: list[tuple[int, list[_Route]]] = []
    for n, item in enumerate(routes):
        key = fact(item[2], "match", int, -1 - n, item[0])
        if groups and groups[-1][0] == key:
            groups[-1][1].append(item)
        else:
            groups.append((key, [item]))
    return [items for _, items in groups]


def _match(routes: list[_Route]) -> RouteMatch:
    first_loc, _, facts = routes[0]
    conditions = [_conditions(r.match, sub(rloc, "match")) for rloc, r, _ in routes]
    if any(c != conditions[0] for c in conditions[1:]):
        raise first_loc.error("the Routes of one PathPrefix match must agree on its conditions")
    kinds = [(r.match.WhichOneof("path_specifier"), _path_value(r.match)) for _, r, _ in routes]
    written = fact(facts, "pathValue", str, "", first_loc)
    path: PathMatch | None
    if len(kinds) == 2 and kinds[0][0] == "path" and kinds[1] == ("prefix", kinds[0][1] + "/"):
        path = PathMatch(type=MatchType.PREFIX, value=written or kinds[0][1])
    elif len(kinds) != 1:
        raise first_loc.error("expected one Route per match, or a path + prefix pair")
    elif kinds[0] == ("prefix", "/"):
        any_path = fact(facts, "anyPath", bool, False, first_loc)
        path = None if any_path else PathMatch(type=MatchType.PREFIX, value=written or "/")
    elif kinds[0][0] == "prefix":
        raise sub(first_loc, "match.prefix").error(
            f"prefix {kinds[0][1]!r} matches character-wise; plait matches path prefixes "
            "element-wise only (encode PathPrefix /a as path /a + prefix /a/)"
        )
    elif kinds[0][0] == "path":
        path = PathMatch(type=MatchType.EXACT, value=kinds[0][1])
    elif kinds[0][0] == "safe_regex":
        path = PathMatch(
            type=MatchType.REGEX, value=kinds[0][1], regex=_compile(kinds[0][1], first_loc)
        )
    else:
        raise sub(first_loc, "match").expected("prefix, path or safe_regex", kinds[0][0])
    method, headers, query = conditions[0]
    return RouteMatch(path=path, headers=headers, method=method, query_params=query)


def _path_value(match: Message) -> str:
    kind = match.WhichOneof("path_specifier")
    if kind == "safe_regex":
        return str(match.safe_regex.regex)
    return str(getattr(match, kind)) if kind else ""


def _conditions(
    match: Message, loc: Loc
) -> tuple[str | None, tuple[HeaderMatch, ...], tuple[HeaderMatch, ...]]:
    only(match, ("prefix", "path", "safe_regex", "headers", "query_parameters"), loc)
    if match.WhichOneof("path_specifier") == "safe_regex":
        only(match.safe_regex, ("regex",), sub(loc, "safe_regex"))
    method = None
    headers: list[HeaderMatch] = []
    for k, h in enumerate(match.headers):
        hloc = sub(loc, f"headers[{k}] {h.name!r}")
        only(h, ("name", "string_match"), hloc)
        hm = _string_match(h.name.lower(), h.string_match, hloc)
        if hm.name == ":method" and hm.type is MatchType.EXACT and method is None:
            method = hm.value
        elif hm.name.startswith(":"):
            raise hloc.error("plait matches only :method (exactly) among pseudo-headers")
        else:
            headers.append(hm)
    query: list[HeaderMatch] = []
    for k, q in enumerate(match.query_parameters):
        qloc = sub(loc, f"query_parameters[{k}] {q.name!r}")
        only(q, ("name", "string_match"), qloc)
        query.append(_string_match(q.name, q.string_match, qloc))
    return method, tuple(headers), tuple(query)


def _string_match(name: str, sm: Message, loc: Loc) -> HeaderMatch:
    only(sm, ("exact", "safe_regex"), sub(loc, "string_match"))
    kind = sm.WhichOneof("match_pattern")
    if kind == "exact":
        return HeaderMatch(name=name, type=MatchType.EXACT, value=sm.exact)
    if kind == "safe_regex":
        only(sm.safe_regex, ("regex",), sub(loc, "string_match.safe_regex"))
        value = str(sm.safe_regex.regex)
        return HeaderMatch(name=name, type=MatchType.REGEX, value=value, regex=_compile(value, loc))
    raise sub(loc, "string_match").expected("exact or safe_regex", kind)


def _compile(value: str, loc: Loc) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise loc.expected(f"a regular expression ({exc})", value) from None
