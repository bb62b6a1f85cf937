"""The router: Gateway API match semantics, first (most precedent) rule wins."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.core.config import (
    HeaderMatch,
    MatchType,
    PathMatch,
    RouteMatch,
    RouteRule,
    RouteTable,
    WeightedBackend,
    load_config,
)
from plait.core.router import Router
from plait.plugins import load_filter_types
from plait.sdk import Headers, RequestHead


def _head(
    path: str = "/", method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> RequestHead:
    return RequestHead(method=method, path=path, headers=Headers(headers or []))


def _rule(name: str, *matches: RouteMatch) -> RouteRule:
    return RouteRule(name=name, matches=matches, backends=(WeightedBackend(cluster="c"),))


def _path(mtype: MatchType, value: str) -> PathMatch:
    regex = re.compile(value) if mtype is MatchType.REGEX else None
    return PathMatch(type=mtype, value=value, regex=regex)


def _router(*rules: RouteRule) -> Router:
    return Router(RouteTable(service="s", rules=rules))


def _name(router: Router, head: RequestHead) -> str | None:
    rule = router.match(head)
    return rule.name if rule else None


def test_single_catch_all_matches_everything() -> None:
    r = _router(_rule("all", RouteMatch(path=_path(MatchType.PREFIX, "/"))))
    for path in ("/", "/a/b?c=d", "*", ""):
        assert _name(r, _head(path, "DELETE")) == "all"
    assert _name(_router(_rule("empty", RouteMatch())), _head("/x")) == "empty"


def test_empty_table_matches_nothing() -> None:
    assert _router().match(_head()) is None


@pytest.mark.parametrize(
    ("value", "path", "hit"),
    [
        ("/abc", "/abc", True),
        ("/abc", "/abc/", True),
        ("/abc", "/abc/def", True),
        ("/abc", "/abcd", False),
        ("/abc/", "/abc", True),  # a trailing slash in the prefix is ignored
        ("/abc", "/abc?x=1", True),  # the query is not part of the path
        ("/abc", "/ABC", False),  # case-sensitive
        ("/abc", "/", False),
    ],
)
def test_path_prefix_is_element_wise(value: str, path: str, hit: bool) -> None:
    r = _router(_rule("p", RouteMatch(path=_path(MatchType.PREFIX, value))))
    assert (r.match(_head(path)) is not None) is hit


def test_exact_and_regex_paths() -> None:
    r = _router(
        _rule("exact", RouteMatch(path=_path(MatchType.EXACT, "/a"))),
        _rule("regex", RouteMatch(path=_path(MatchType.REGEX, r"/v[0-9]+/.*"))),
    )
    assert _name(r, _head("/a")) == "exact"
    assert _name(r, _head("/a?q")) == "exact"
    assert _name(r, _head("/a/")) is None
    assert _name(r, _head("/v2/x")) == "regex"
    assert _name(r, _head("/api/v2/x")) is None  # the whole path must match


def test_method_headers_and_query_all_must_hold() -> None:
    match = RouteMatch(
        path=_path(MatchType.PREFIX, "/api"),
        method="POST",
        headers=(
            HeaderMatch(name="x-canary", type=MatchType.EXACT, value="1"),
            HeaderMatch(name="x-user", type=MatchType.REGEX, value="a.*", regex=re.compile("a.*")),
        ),
        query_params=(HeaderMatch(name="debug", type=MatchType.EXACT, value="1"),),
    )
    r = _router(_rule("m", match))
    ok = _head("/api/x?debug=1&debug=2", "POST", [("X-Canary", "1"), ("x-user", "alice")])
    assert _name(r, ok) == "m"
    assert _name(r, _head(ok.path, "GET", list(ok.headers))) is None
    assert (
        _name(r, _head("/api/x?debug=2&debug=1", "POST", list(ok.headers))) is None
    )  # first value
    assert _name(r, _head("/api/x", "POST", list(ok.headers))) is None
    assert _name(r, _head(ok.path, "POST", [("x-canary", "1"), ("x-user", "bob")])) is None
    assert _name(r, _head(ok.path, "POST", [("x-user", "alice")])) is None
    assert _name(r, _head(ok.path, "POST", [("x-canary", "2"), ("x-user", "alice")])) is None


def test_query_param_blank_and_regex() -> None:
    r = _router(
        _rule(
            "q",
            RouteMatch(
                query_params=(
                    HeaderMatch(name="a", type=MatchType.EXACT, value=""),
                    HeaderMatch(
                        name="b", type=MatchType.REGEX, value="[0-9]+", regex=re.compile("[0-9]+")
                    ),
                )
            ),
        )
    )
    assert _name(r, _head("/?a=&b=42")) == "q"
    assert _name(r, _head("/?a&b=4x")) is None
    assert _name(r, _head("/?b=1")) is None


def test_matches_of_a_rule_are_ored_and_first_rule_wins() -> None:
    r = _router(
        _rule("two", RouteMatch(path=_path(MatchType.EXACT, "/x")), RouteMatch(method="PUT")),
        _rule("rest", RouteMatch(path=_path(MatchType.PREFIX, "/"))),
    )
    assert _name(r, _head("/x")) == "two"
    assert _name(r, _head("/y", "PUT")) == "two"
    assert _name(r, _head("/y")) == "rest"


def test_tables_from_yaml_in_precedence_order(tmp_path: Path) -> None:
    text = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}], endpoints: [{address: 127.0.0.1, port: 1}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: s}]
  rules:
  - name: short
    matches: [{path: {value: /a}}]
    backendRefs: [{name: s, port: 80}]
  - name: long
    matches: [{path: {value: /a/b}}]
    backendRefs: [{name: s, port: 80}]
  - name: exact
    matches: [{path: {type: Exact, value: /a/b/c}}]
    backendRefs: [{name: s, port: 80}]
"""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    cfg = load_config([path], load_filter_types())
    r = Router(cfg.routes["s.default:80"])
    assert _name(r, _head("/a/b/c")) == "default/r/exact"
    assert _name(r, _head("/a/b/c/d")) == "default/r/long"
    assert _name(r, _head("/a/x")) == "default/r/short"
    assert _name(r, _head("/b")) is None  # with routes attached, unmatched requests are rejected


def _per_call(router: Router, head: RequestHead, n: int = 20_000) -> float:
    match = router.match
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            match(head)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def test_match_is_cheap() -> None:
    # Loose bounds (a shared CI box); the targets are < 1 us and a few us.
    catch_all = _router(_rule("all", RouteMatch(path=_path(MatchType.PREFIX, "/"))))
    assert _per_call(catch_all, _head("/x")) < 2e-6
    ten = _router(
        *(_rule(f"r{i}", RouteMatch(path=_path(MatchType.PREFIX, f"/p{i}"))) for i in range(9)),
        _rule(
            "last",
            RouteMatch(
                path=_path(MatchType.PREFIX, "/"),
                headers=(HeaderMatch(name="x-a", type=MatchType.EXACT, value="1"),),
            ),
        ),
    )
    head = _head("/zzz/yyy", headers=[("host", "h"), ("x-a", "1")])
    assert _name(ten, head) == "last"
    assert _per_call(ten, head) < 20e-6


# -- against a naive reference ------------------------------------------------------------

_SEGMENTS = st.lists(st.sampled_from(["a", "b", "ab"]), max_size=3)
_PATHS = _SEGMENTS.map(lambda s: "/" + "/".join(s))
_MATCHES = st.builds(
    lambda kind, path, method, header: RouteMatch(
        path=PathMatch(type=kind, value=path),
        method=method,
        headers=(HeaderMatch(name="x-h", type=MatchType.EXACT, value=header),) if header else (),
    ),
    st.sampled_from([MatchType.EXACT, MatchType.PREFIX]),
    _PATHS,
    st.sampled_from([None, "GET", "POST"]),
    st.sampled_from([None, "1"]),
)


def _reference(rules: list[RouteRule], head: RequestHead) -> RouteRule | None:
    path = head.path.split("?")[0]
    for rule in rules:
        for m in rule.matches:
            assert m.path is not None
            if m.path.type is MatchType.EXACT:
                path_ok = path == m.path.value
            else:  # element-wise: the prefix's segments start the path's segments
                want = m.path.value.rstrip("/").split("/")
                path_ok = path.split("/")[: len(want)] == want
            ok = path_ok and m.method in (None, head.method)
            ok = ok and all(head.headers.get(h.name) == h.value for h in m.headers)
            if ok:
                return rule
    return None


@given(
    st.lists(st.lists(_MATCHES, min_size=1, max_size=2), max_size=5),
    _PATHS,
    st.sampled_from(["GET", "POST"]),
    st.sampled_from([[], [("x-h", "1")], [("x-h", "2")]]),
)
def test_router_agrees_with_the_reference(
    matches: list[list[RouteMatch]], path: str, method: str, headers: list[tuple[str, str]]
) -> None:
    rules = [_rule(f"r{i}", *ms) for i, ms in enumerate(matches)]
    head = _head(path + "?q=1", method, headers)
    assert Router(RouteTable(service="s", rules=tuple(rules))).match(head) is _reference(
        rules, head
    )
