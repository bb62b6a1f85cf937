"""``RouteTable`` → ``envoy.config.route.v3.RouteConfiguration`` (RDS).

One RouteConfiguration per table, named by the table key, with one virtual host
(``domains: ["*"]``: a plait table is per service port, not per host name). For
each ``RouteRule`` and each of its ``RouteMatch``: Envoy Routes, in table order (the
translator already sorted by Gateway API precedence, and Envoy/gRPC take the first hit too):

* Path: ``Exact`` → ``path``; ``RegularExpression`` → ``safe_regex`` (RE2 on the wire; plait
  compiles it with Python's ``re``); ``PathPrefix`` is element-wise in Gateway API (``/a``
  matches ``/a`` and ``/a/b``, not ``/ab``) whereas Envoy's and gRPC's ``prefix`` is
  character-wise, so ``PathPrefix /a`` becomes *two* Routes, ``path: /a`` then
  ``prefix: /a/``, which both Envoy and gRPC understand (``path_separated_prefix`` would be
  one Route, but gRPC does not implement it). ``PathPrefix /`` is the one Route ``prefix: /``.
* ``method`` → a ``:method`` header matcher (first); headers and query parameters →
  ``string_match`` ``exact`` or ``safe_regex``.
* Action: no backend → ``direct_response`` 500 (Gateway API: a rule without backends answers
  500); one backend of weight 1 → ``cluster``; otherwise ``weighted_clusters``. ``timeout`` =
  ``timeouts.request``, always set because Envoy's default is 15 s and plait's is none
  (``0s``). ``timeouts.backend_request`` → ``retry_policy.per_try_timeout`` (Envoy applies it
  to the first try too). The rule's ``retry`` is mirrored in ``retry_policy`` (``num_retries``,
  ``retry_on``, ``retriable_status_codes``, ``retry_back_off``; ``core.xds.wire``);
  without one there is no ``retry_on`` and nothing is retried.

``metadata["plait"]`` on every Route: ``rule`` (the rule's index in the table) and ``match``
(the match's index in the rule), so the decoder can regroup Routes into rules and the two
halves of a ``PathPrefix``; ``filters`` (the rule's filters, *without* the ``weighted-split``
entry, which the decoder rebuilds from the action) and ``split`` (that entry's index among
them: the resilience layers follow it); ``retry`` (the rule's ``retry`` stanza, as YAML
would write it); ``pathValue`` when the
written path differs from the wire one (``/a/`` travels as ``/a``); ``anyPath`` for a match
without a path condition; ``timeouts`` the action does not carry. A rule without matches can
never be selected and is not encoded.
"""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import (  # type: ignore[import-untyped]
    route_components_pb2 as rc,
)
from envoy.config.route.v3 import route_pb2  # the package's stubs are reported above
from envoy.type.matcher.v3 import regex_pb2, string_pb2  # type: ignore[import-untyped]

from plait.core.config import (
    WEIGHTED_SPLIT,
    FilterEntry,
    HeaderMatch,
    MatchType,
    RouteMatch,
    RouteRule,
    RouteTable,
)
from plait.core.xds.wire import duration, retry_facts, retry_policy, timeouts_extra
from plait.sdk import ConfigError

from ._encode_base import Message, filter_fields, metadata

__all__ = ["encode_route_table"]

_CARRIED = frozenset({"request", "backend_request"})


def encode_route_table(key: str, table: RouteTable) -> Message:
    """The RouteConfiguration ``key`` for ``table``.

    Raises:
        ConfigError: a rule with backends but without their ``weighted-split`` entry (not
            built by the translator), a filter config that is not JSON, or a ``retry`` that
            has no exact YAML form.
    """
    where = f"RouteConfiguration {key}"
    routes = [
        route
        for i, rule in enumerate(table.rules)
        for j, match in enumerate(rule.matches)
        for route in _routes(rule, i, j, match, f"{where}: rules[{i}] {rule.name!r}")
    ]
    vhost = rc.VirtualHost(name=key, domains=["*"], routes=routes)
    out = route_pb2.RouteConfiguration(name=key, virtual_hosts=[vhost])
    if table.service != key:
        out.metadata.CopyFrom(metadata({"service": table.service}, where))
    return out


def _routes(rule: RouteRule, i: int, j: int, m: RouteMatch, where: str) -> list[Message]:
    facts: dict[str, object] = {"rule": i, "match": j}
    filters, split = _rule_filters(rule, where)
    if filters:
        facts["filters"] = filters
    if split is not None:
        facts["split"] = split
    if rule.retry is not None:
        try:
            facts["retry"] = retry_facts(rule.retry, f"{where}: retry")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if extra := timeouts_extra(rule.timeouts, _CARRIED):
        facts["timeouts"] = extra
    paths: list[dict[str, Any]]
    path = m.path
    if path is None:
        facts["anyPath"] = True
        paths = [{"prefix": "/"}]
    elif path.type is MatchType.EXACT:
        paths = [{"path": path.value}]
    elif path.type is MatchType.REGEX:
        paths = [{"safe_regex": regex_pb2.RegexMatcher(regex=path.value)}]
    else:
        stem = path.value.rstrip("/")
        if path.value != (stem or "/"):
            facts["pathValue"] = path.value
        paths = [{"path": stem}, {"prefix": stem + "/"}] if stem else [{"prefix": "/"}]
    md = metadata(facts, where)
    action = _action(rule)
    return [rc.Route(name=rule.name, match=_match(m, p), metadata=md, **action) for p in paths]


def _rule_filters(rule: RouteRule, where: str) -> tuple[list[dict[str, object]], int | None]:
    """The rule's filters without its ``weighted-split`` entry, and that entry's index."""
    split = None
    if rule.backends:
        want = {"backends": [{"cluster": b.cluster, "weight": b.weight} for b in rule.backends]}
        splits = [
            k
            for k, e in enumerate(rule.filters)
            if e.type == WEIGHTED_SPLIT and e.raw_config == want
        ]
        if not splits:
            raise ConfigError(
                f"{where}: no {WEIGHTED_SPLIT!r} filter for the rule's backends (the "
                "translator adds one; the action carries the backends)"
            )
        split = splits[-1]
    out = [
        _filter(e, f"{where}: filters[{k}] {e.name!r}")
        for k, e in enumerate(rule.filters)
        if k != split
    ]
    return out, split


def _filter(entry: FilterEntry, where: str) -> dict[str, object]:
    return {"name": entry.name, **filter_fields(entry, where)}


def _action(rule: RouteRule) -> dict[str, Message]:
    if not rule.backends:
        return {"direct_response": rc.DirectResponseAction(status=500)}
    action = rc.RouteAction(timeout=duration(rule.timeouts.request or 0))
    if len(rule.backends) == 1 and rule.backends[0].weight == 1:
        action.cluster = rule.backends[0].cluster
    else:
        for b in rule.backends:
            cw = action.weighted_clusters.clusters.add(name=b.cluster)
            cw.weight.value = b.weight
    if (policy := retry_policy(rule.retry, rule.timeouts.backend_request)) is not None:
        action.retry_policy.CopyFrom(policy)
    return {"route": action}


def _match(m: RouteMatch, path: dict[str, Any]) -> Message:
    out = rc.RouteMatch(**path)
    if m.method is not None:
        out.headers.append(rc.HeaderMatcher(name=":method", string_match=_exact(m.method)))
    out.headers.extend(
        rc.HeaderMatcher(name=h.name, string_match=_string_match(h)) for h in m.headers
    )
    out.query_parameters.extend(
        rc.QueryParameterMatcher(name=q.name, string_match=_string_match(q)) for q in m.query_params
    )
    return out


def _exact(value: str) -> Message:
    return string_pb2.StringMatcher(exact=value)


def _string_match(h: HeaderMatch) -> Message:
    if h.type is MatchType.REGEX:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=h.value))
    return _exact(h.value)
