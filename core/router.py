"""The router: the first rule of a ``RouteTable`` whose match holds for a request head.

Theory of operation: the translator already sorted the table by Gateway API
precedence (``core/config/_routes.py``), so matching is "first hit wins". The
router compiles each ``RouteMatch`` once into a predicate over ``(path, head)``
that checks only the conditions present (path, method, headers, query
parameters, cheapest first), and keeps a fast path for the common table of a
single catch-all rule, which is answered without looking at the request.

Semantics (Gateway API ``HTTPRouteMatch``): all conditions of a match must
hold (AND); a rule matches if any of its matches does (OR). ``PathPrefix`` is
element-wise (``/a`` matches ``/a`` and ``/a/b``, not ``/ab``); regular
expressions must match the whole path or value; header names are
case-insensitive, query parameter names case-sensitive; a repeated header or
parameter is matched on its first value. The path is matched as received, on
the part before ``?``. A request that matches no rule gets ``None`` (the caller
answers 404: GAMMA rejects unmatched requests once routes exist).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from plait.sdk import RequestHead

from .config import HeaderMatch, MatchType, PathMatch, RouteMatch, RouteRule, RouteTable

__all__ = ["Router"]

Predicate = Callable[[RequestHead], bool]


class Router:
    """Matches request heads against one compiled :class:`RouteTable`."""

    __slots__ = ("_catch_all", "_entries", "table")

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self._entries = tuple(_compile(m, rule) for rule in table.rules for m in rule.matches)
        # The common case: the first entry matches everything, so it always wins.
        first = self._entries[0] if self._entries else None
        self._catch_all = first[4] if first and first[0] == _ANY and first[3] is None else None

    def match(self, head: RequestHead) -> RouteRule | None:
        """The winning rule for ``head``, or ``None`` if no rule matches."""
        if self._catch_all is not None:
            return self._catch_all
        path = head.path
        q = path.find("?")
        if q >= 0:
            path = path[:q]
        # The path test is inlined (no call per rule); the rest, if any, is one predicate.
        for kind, a, b, rest, rule in self._entries:
            if kind == _PREFIX:
                if not path.startswith(b) and path != a:
                    continue
            elif kind == _EXACT:
                if path != a:
                    continue
            elif kind == _REGEX and b(path) is None:
                continue
            if rest is None or rest(head):
                return rule
        return None


# Entry: (path kind, a, b, predicate over the head or None, rule) where a/b are:
# _PREFIX: the prefix without and with its trailing "/"; _EXACT: the path; _REGEX: -, fullmatch.
_ANY: Final = 0
_PREFIX: Final = 1
_EXACT: Final = 2
_REGEX: Final = 3
_Entry = tuple[int, str, Any, "Predicate | None", RouteRule]


def _compile(m: RouteMatch, rule: RouteRule) -> _Entry:
    kind, a, b = _path_test(m.path)
    checks: list[Predicate] = []
    if m.method is not None:
        checks.append(_method_check(m.method))
    checks.extend(_header_check(h) for h in m.headers)
    if m.query_params:
        checks.append(_query_check(m.query_params))
    return (kind, a, b, _all(checks), rule)


def _all(checks: list[Predicate]) -> Predicate | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    all_checks = tuple(checks)

    def check_all(head: RequestHead) -> bool:
        for check in all_checks:  # noqa: SIM110 (a loop is cheaper than all() + a generator)
            if not check(head):
                return False
        return True

    return check_all


def _path_test(pm: PathMatch | None) -> tuple[int, str, Any]:
    if pm is None:
        return _ANY, "", None
    if pm.type is MatchType.EXACT:
        return _EXACT, pm.value, None
    if pm.type is MatchType.PREFIX:
        prefix = pm.value.rstrip("/")
        return (_PREFIX, prefix, prefix + "/") if prefix else (_ANY, "", None)
    assert pm.regex is not None, "the translator compiles RegularExpression matches"
    return _REGEX, pm.value, pm.regex.fullmatch


def _method_check(method: str) -> Predicate:
    return lambda head: head.method == method


def _header_check(hm: HeaderMatch) -> Predicate:
    name = hm.name.lower().encode("latin-1")
    if hm.type is MatchType.REGEX:
        assert hm.regex is not None
        fullmatch = hm.regex.fullmatch

        def regex_check(head: RequestHead) -> bool:
            raw = head.headers.get_raw(name)
            return raw is not None and fullmatch(raw.decode("latin-1")) is not None

        return regex_check
    value = hm.value.encode("latin-1")
    return lambda head: head.headers.get_raw(name) == value


def _query_check(matches: tuple[HeaderMatch, ...]) -> Predicate:
    wanted = tuple(
        (m.name, m.value, m.regex if m.type is MatchType.REGEX else None) for m in matches
    )

    def query_check(head: RequestHead) -> bool:
        q = head.path.find("?")
        if q < 0:
            return False
        params: dict[str, str] = {}
        for k, v in parse_qsl(head.path[q + 1 :], keep_blank_values=True):
            params.setdefault(k, v)  # the first value of a repeated parameter
        for name, value, regex in wanted:
            got = params.get(name)
            if got is None:
                return False
            if regex is None:
                if got != value:
                    return False
            elif regex.fullmatch(got) is None:
                return False
        return True

    return query_check
