"""header-modifier filters, driven through plait.sdk.testing."""

from __future__ import annotations

import anyio

from plait.filters.header_modifier import (
    REQUEST_HEADER_MODIFIER,
    RESPONSE_HEADER_MODIFIER,
    RequestHeaderModifier,
    ResponseHeaderModifier,
    parse_header_modifier,
)
from plait.sdk import Headers, ResponseHead
from plait.sdk.testing import check_filter, drive, make_request

RAW = {
    "set": [{"name": "X-Route", "value": "v2"}],
    "add": [{"name": "x-tag", "value": "b"}],
    "remove": ["x-debug"],
}


def test_request_modifier_set_add_remove() -> None:
    f = RequestHeaderModifier(parse_header_modifier(RAW))
    head = make_request(
        headers=[
            ("x-route", "v1"),
            ("X-Tag", "a"),
            ("x-debug", "1"),
            ("accept", "*/*"),
            ("x-route", "v0"),
        ]
    )
    res = anyio.run(lambda: drive(f, request_head=head))
    assert list(res.request_head.headers) == [
        ("x-tag", "a"),
        ("accept", "*/*"),
        ("x-route", "v2"),
        ("x-tag", "b"),
    ]
    assert res.upstream_called and res.local_reply is None


def test_response_modifier_leaves_the_request_alone() -> None:
    f = ResponseHeaderModifier(parse_header_modifier(RAW))
    head = make_request(headers=[("x-debug", "1")])
    response = ResponseHead(status=200, headers=Headers([("x-debug", "1"), ("server", "s")]))
    res = anyio.run(lambda: drive(f, request_head=head, response_head=response))
    assert list(res.request_head.headers) == [("x-debug", "1")]
    assert res.response_head is not None
    assert list(res.response_head.headers) == [("server", "s"), ("x-route", "v2"), ("x-tag", "b")]


def test_no_op_config_changes_nothing() -> None:
    f = RequestHeaderModifier(parse_header_modifier({}))
    head = make_request(headers=[("a", "1")])
    anyio.run(lambda: drive(f, request_head=head))
    assert list(head.headers) == [("a", "1")]


def test_only_the_needed_hook_is_overridden() -> None:
    assert "on_request_headers" in vars(RequestHeaderModifier)
    assert "on_response_headers" not in vars(RequestHeaderModifier)
    assert "on_response_headers" in vars(ResponseHeaderModifier)


def test_conformance() -> None:
    check_filter(REQUEST_HEADER_MODIFIER, RAW)
    check_filter(RESPONSE_HEADER_MODIFIER, RAW)
    assert (
        REQUEST_HEADER_MODIFIER.stream_independent and RESPONSE_HEADER_MODIFIER.stream_independent
    )
