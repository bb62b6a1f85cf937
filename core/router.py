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
from urllib.parse import parse_qsl

from plait.sdk import RequestHead

from .config import HeaderMatch, MatchType, PathMatch, RouteMatch, RouteRule, RouteTable

__all__ = ["Router"]

Predicate = Callable[[str, RequestHead], bool]


class Router:
    """Matches request heads against one compiled :class:`RouteTable`."""

    __slots__ = ("_catch_all", "_entries", "table")

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        entries: list[tuple[Predicate, RouteRule]] = []
        for rule in table.rules:
            entries.extend((_compile(m), rule) for m in rule.matches)
        self._entries = tuple(entries)
        # The common case: the first entry matches everything, so it always wins.
        self._catch_all = entries[0][1] if entries and entries[0][0] is _always else None

    def match(self, head: RequestHead) -> RouteRule | None:
        """The winning rule for ``head``, or ``None`` if no rule matches."""
        if self._catch_all is not None:
            return self._catch_all
        target = head.path
        q = target.find("?")
        path = target if q < 0 else target[:q]
        for predicate, rule in self._entries:
            if predicate(path, head):
                return rule
        return None


def _always(path: str, head: RequestHead) -> bool:
    return True


def _compile(m: RouteMatch) -> Predicate:
    checks: list[Predicate] = []
    if m.path is not None and (p := _path_check(m.path)) is not None:
        checks.append(p)
    if m.method is not None:
        checks.append(_method_check(m.method))
    checks.extend(_header_check(h) for h in m.headers)
    if m.query_params:
        checks.append(_query_check(m.query_params))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    all_checks = tuple(checks)

    def check_all(path: str, head: RequestHead) -> bool:
        for check in all_checks:  # noqa: SIM110 (a loop is cheaper than all() + a generator)
            if not check(path, head):
                return False
        return True

    return check_all


def _path_check(pm: PathMatch) -> Predicate | None:
    value = pm.value
    if pm.type is MatchType.EXACT:
        return lambda path, head: path == value
    if pm.type is MatchType.PREFIX:
        prefix = value.rstrip("/")
        if not prefix:
            return None  # "/" matches every path
        with_slash = prefix + "/"
        return lambda path, head: path.startswith(with_slash) or path == prefix
    regex = pm.regex
    assert regex is not None, "the translator compiles RegularExpression matches"
    fullmatch = regex.fullmatch
    return lambda path, head: fullmatch(path) is not None


def _method_check(method: str) -> Predicate:
    return lambda path, head: head.method == method


def _header_check(hm: HeaderMatch) -> Predicate:
    name = hm.name.lower().encode("latin-1")
    if hm.type is MatchType.REGEX:
        assert hm.regex is not None
        fullmatch = hm.regex.fullmatch

        def regex_check(path: str, head: RequestHead) -> bool:
            raw = head.headers.get_raw(name)
            return raw is not None and fullmatch(raw.decode("latin-1")) is not None

        return regex_check
    value = hm.value.encode("latin-1")
    return lambda path, head: head.headers.get_raw(name) == value


def _query_check(matches: tuple[HeaderMatch, ...]) -> Predicate:
    wanted = tuple(
        (m.name, m.value, m.regex if m.type is MatchType.REGEX else None) for m in matches
    )

    def query_check(path: str, head: RequestHead) -> bool:
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
