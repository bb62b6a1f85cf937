"""``simple_framing`` (the fast codec's shortcut) agrees with ``interpret_head``.

Whenever the shortcut accepts a set of framing fields, it must return the
same host, length and close decision and leave the same pass-through header
list as the full rules; when it declines, it must not have touched the list.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.codec import RequestReceived
from plait.core.codec.http1.rules import (
    ProtocolError,
    check_host,
    interpret_head,
    length_value,
    simple_framing,
)
from plait.sdk import Headers, ResponseHead

NAMES = st.sampled_from(
    [b"host", b"content-length", b"connection", b"transfer-encoding", b"te", b"expect"]
)
VALUES = st.sampled_from(
    [
        *(b"a.example:80", b"", b"0", b"12", b"1x", b"0" * 19, b"close", b"keep-alive"),
        *(b"Keep-Alive", b"CLOSE", b"close, te", b"upgrade", b"chunked", b"trailers"),
        *(b"Close", b"+5", b" 5", b"5 ", b"\xd9\xa3", b"9" * 18, b"-1", b"0x10"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(NAMES, VALUES), max_size=4),
    st.booleans(),
    st.booleans(),
)
def test_simple_framing_matches_interpret_head(
    specials: list[tuple[bytes, bytes]], http11: bool, request: bool
) -> None:
    fast_headers: list[tuple[bytes, bytes]] = [(b"accept", b"*/*")]
    full_headers = list(fast_headers)
    facts = simple_framing(specials, fast_headers, http11, request)
    if facts is None:
        assert fast_headers == full_headers
        return
    try:
        host, length, chunked, close, upgrade, expect = interpret_head(
            specials, full_headers, http11=http11, request=request
        )
    except ProtocolError:
        # Only the Host value check, which the caller makes, may refuse it.
        assert request
        with pytest.raises(ProtocolError):
            check_host(facts[0])
        return
    assert facts == (host, length, close)
    assert not (chunked or upgrade or expect)
    assert fast_headers == full_headers


def test_simple_framing_declines_what_interpret_head_refuses() -> None:
    for specials in (
        [(b"content-length", b"1"), (b"content-length", b"1")],
        [(b"content-length", b"1x")],
        [(b"host", b"a"), (b"host", b"b")],
    ):
        assert simple_framing(specials, [], True, True) is None
        try:
            interpret_head(specials, [], http11=True, request=True)
        except ProtocolError:
            pass
        else:
            raise AssertionError(specials)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=20), st.text("0123456789", max_size=20).map(str.encode)))
def test_length_value_reads_what_the_rfc_allows(value: bytes) -> None:
    """1 to 18 ASCII digits are a length; anything else (a sign, a space, a non-ASCII
    digit, nothing, more digits than fit) is -1, which the codecs answer with 400/502."""
    digits = value.isdigit() and len(value) <= 18  # bytes.isdigit is ASCII only
    assert length_value(value) == (int(value) if digits else -1)


def test_made_up_header_names_cannot_grow_the_name_table() -> None:
    """A peer sending a new header name in every request (long or short) gets each name
    lower-cased as always, while the table of kept names stays bounded."""
    from plait.core.codec.http1 import H1ServerCodec, base

    codec = H1ServerCodec()
    for i in range(1500):
        name = (b"X-Long-%d-" % i) + b"n" * 100 if i % 2 else b"X-Made-Up-%d" % i
        data = b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b": v\r\n\r\n"
        (event,) = codec.receive_data(data)
        assert isinstance(event, RequestReceived)
        assert event.head.headers.raw[-1] == (name.lower(), b"v")
        codec.send_response(ResponseHead(status=204, headers=Headers([])), end_stream=True)
        codec.data_to_send()
    assert len(base._LOWER) <= base._LOWER_MAX
    assert all(len(name) <= base._LOWER_LONGEST for name in base._LOWER)
