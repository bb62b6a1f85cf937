"""No CR or LF reaches the wire from anything a filter or a peer can set on a head we send.

A filter (Python or Wasm) can set the method, path, authority, reason and any header name
or value of the head the codec then frames; a CR or LF in any of them would let it (or a
peer whose value a filter copies) split the message: request smuggling, response
splitting. Whatever the field and wherever in it the CR or LF sits, ``send_request`` and
``send_response`` either refuse it with ``ValueError`` and write nothing (and the
connection can still send a clean head afterwards), or write a head the value never
reached (a field the codec rewrites, such as ``te`` or ``connection``): every CR and LF on
the wire is one of its line ends, and what followed the CR or LF starts no line. Both
codecs (the fast one and the h11 reference).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.codec import h11ref, http1
from plait.core.codec.http1.rules import crlf_free
from plait.sdk import Headers, RequestHead, ResponseHead

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
BAD = st.sampled_from(["\r", "\n", "\r\n", "\n\r"])
TEXT = st.text("abcxyz0-9 :;=/", max_size=6)
AFTER = TEXT.map(lambda t: "zq" + t)  # a marker: no line of the wire may start with it
REQUEST_FIELDS = st.sampled_from(
    ["method", "path", "authority", "name", "value", "te", "connection", "upgrade"]
)
RESPONSE_FIELDS = st.sampled_from(["reason", "name", "value", "connection", "upgrade"])


IMPLS = pytest.mark.parametrize("impl", [http1, h11ref], ids=["llhttp", "h11ref"])


def _spliced(before: str, bad: str, after: str) -> str:
    return before + bad + after


def _refused_or_clean(send: Any, codec: Any) -> bool:
    """True if ``send()`` raised ``ValueError`` and wrote nothing; else checks that what it
    wrote carries no CR or LF of the field and returns False."""
    try:
        send()
    except ValueError:
        assert codec.data_to_send() == b""
        return True
    head = codec.data_to_send().partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert head.count(b"\r") == head.count(b"\n") == head.count(b"\r\n"), head
    assert b"\nzq" not in head.lower(), head
    return False


def _request(field: str, evil: str) -> tuple[RequestHead, dict[str, Any]]:
    method, path, authority = "GET", "/p", "a.example"
    fields = [("x-ok", "1")]
    upgrade = False
    if field == "method":
        method = "GET" + evil if evil[0] not in "\r\n" else "G" + evil
    elif field == "path":
        path = "/p" + evil
    elif field == "authority":
        authority = "a" + evil
    elif field == "name":
        fields.append(("x-" + evil.strip() + evil, "v"))
    elif field == "value":
        fields.append(("x-v", "v" + evil))
    elif field == "te":
        fields.append(("te", "trailers" + evil))
    elif field == "connection":
        fields.append(("connection", "keep-alive" + evil))
    elif field == "upgrade":
        fields.append(("upgrade", "websocket" + evil))
        upgrade = True
    head = RequestHead(method=method, path=path, authority=authority, headers=Headers(fields))
    return head, {"end_stream": True, "upgrade": upgrade}


def _response(field: str, evil: str) -> ResponseHead:
    reason = ""
    fields = [("x-ok", "1")]
    if field == "reason":
        reason = "OK" + evil
    elif field == "name":
        fields.append(("x-" + evil.strip() + evil, "v"))
    elif field == "value":
        fields.append(("x-v", "v" + evil))
    elif field == "connection":
        fields.append(("connection", "keep-alive" + evil))
    elif field == "upgrade":
        fields.append(("upgrade", "websocket" + evil))
    return ResponseHead(status=200, headers=Headers(fields), reason=reason)


@IMPLS
@settings(max_examples=300, deadline=None)
@given(field=REQUEST_FIELDS, before=TEXT, bad=BAD, after=AFTER)
def test_send_request_refuses_cr_or_lf_in_any_field(
    impl: ModuleType, field: str, before: str, bad: str, after: str
) -> None:
    codec = impl.H1ClientCodec()
    head, kw = _request(field, _spliced(before, bad, after))
    if not _refused_or_clean(lambda: codec.send_request(head, **kw), codec):
        assert field in ("te", "connection"), field  # rewritten by the codec, never copied
        return
    clean = RequestHead(method="GET", path="/", authority="a", headers=Headers([("x", "1")]))
    codec.send_request(clean, end_stream=True)
    assert codec.data_to_send().startswith(b"GET / HTTP/1.1\r\n")


@IMPLS
@settings(max_examples=300, deadline=None)
@given(field=RESPONSE_FIELDS, before=TEXT, bad=BAD, after=AFTER)
def test_send_response_refuses_cr_or_lf_in_any_field(
    impl: ModuleType, field: str, before: str, bad: str, after: str
) -> None:
    codec = impl.H1ServerCodec()
    codec.receive_data(GET)
    head = _response(field, _spliced(before, bad, after))
    if not _refused_or_clean(lambda: codec.send_response(head, end_stream=True), codec):
        assert field in ("connection", "upgrade"), field  # rewritten or dropped (not a 101)
        return
    codec.send_response(ResponseHead(status=204, headers=Headers([])), end_stream=True)
    assert codec.data_to_send().startswith(b"HTTP/1.1 204 ")


@IMPLS
@pytest.mark.parametrize("bad", ["\r", "\n", "\r\nx-evil: 1"])
def test_send_informational_refuses_cr_or_lf_in_its_reason(impl: ModuleType, bad: str) -> None:
    codec = impl.H1ServerCodec()
    codec.receive_data(
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    with pytest.raises(ValueError):
        codec.send_informational(ResponseHead(status=100, headers=Headers([]), reason="Go" + bad))
    assert codec.data_to_send() == b""


@IMPLS
@pytest.mark.parametrize("count", [1, 40])
def test_every_clean_header_reaches_the_wire(impl: ModuleType, count: int) -> None:
    """The check refuses only what it must: many fields, long values, odd but legal bytes
    (HTAB, obs-text) all go out as they were given."""
    fields = [(f"x-f{i}", "v\tw" + "\xe9" * i + "z" * (i * 50)) for i in range(count)]
    server = impl.H1ServerCodec()
    server.receive_data(GET)
    server.send_response(ResponseHead(status=200, headers=Headers(fields)), end_stream=True)
    wire = server.data_to_send()
    client = impl.H1ClientCodec()
    client.send_request(
        RequestHead(method="GET", path="/", authority="a", headers=Headers(fields)),
        end_stream=True,
    )
    sent = client.data_to_send()
    for name, value in fields:
        line = name.encode() + b": " + value.encode("latin-1") + b"\r\n"
        assert line in wire.lower() or line in wire
        assert line in sent.lower() or line in sent


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_crlf_free_finds_every_cr_and_lf(value: bytes) -> None:
    assert crlf_free(value) == (b"\r" not in value and b"\n" not in value)
