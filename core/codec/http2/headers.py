"""Header-list translation between plait heads and HTTP/2 field lists.

Theory of operation: outbound, one pass over the head's ``(name, value)`` pairs
builds the field list h2 encodes: pseudo-headers first (RFC 9113 §8.3), then
every regular field except the connection-specific ones HTTP/2 forbids
(RFC 9113 §8.2.2: ``connection``, ``keep-alive``, ``proxy-connection``,
``transfer-encoding``, ``upgrade``, any field the ``connection`` header
nominates, and ``te`` unless it is ``trailers``), and ``host``, which becomes
``:authority`` (§8.3.1). Sensitive fields are marked HPACK never-indexed
(RFC 7541 §7.1.3), as h2's own outbound normaliser would. A field that arrived
never-indexed keeps its ``NeverIndexedHeaderTuple`` type and so is forwarded
never-indexed, as an intermediary must.

Inbound, h2 has already validated the block (pseudo-headers first, names
lower-case), so splitting off the pseudo-headers is a slice, and the regular
pairs are adopted by :class:`Headers` without a copy.
"""

from __future__ import annotations

from typing import cast

from hpack import NeverIndexedHeaderTuple

from plait.sdk import Headers, RequestHead, ResponseHead

__all__ = [
    "Fields",
    "expects_continue",
    "header_list_size",
    "request_fields",
    "request_head",
    "response_fields",
    "response_head",
    "trailer_fields",
]

Fields = list[tuple[bytes, bytes]]
"""An HTTP/2 field list as h2 takes and gives it: lower-case names, bytes."""

_DROP, _TE, _CONNECTION, _HOST, _SECRET, _COOKIE = range(6)
_SPECIAL: dict[bytes, int] = {
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"transfer-encoding": _DROP,
    b"upgrade": _DROP,
    b"http2-settings": _DROP,
    b"te": _TE,
    b"host": _HOST,
    b"authorization": _SECRET,
    b"proxy-authorization": _SECRET,
    b"cookie": _COOKIE,
}
_SHORT_COOKIE = 20
"""Cookies shorter than this are never indexed: short values are guessable (h2, nghttp2)."""

_STATUS = [str(code).encode() for code in range(600)]
_COLON = 58  # ord(":")


def request_fields(head: RequestHead) -> Fields:
    """The HTTP/2 field list for ``head``; ``host`` is used when ``authority`` is empty."""
    regular: Fields = []
    host = _append_regular(regular, head.headers.raw)
    method = head.method.encode("latin-1")
    authority = head.authority.encode("latin-1") or host
    if method == b"CONNECT":  # RFC 9113 §8.5: no :scheme, no :path
        return [(b":method", method), (b":authority", authority), *regular]
    pseudo: Fields = [(b":method", method), (b":scheme", head.scheme.encode("latin-1"))]
    if authority:
        pseudo.append((b":authority", authority))
    pseudo.append((b":path", head.path.encode("latin-1")))
    pseudo += regular
    return pseudo


def response_fields(head: ResponseHead) -> Fields:
    """The HTTP/2 field list for a response head (the reason phrase has no HTTP/2 form)."""
    status = head.status
    out: Fields = [(b":status", _STATUS[status] if 0 <= status < 600 else str(status).encode())]
    _append_regular(out, head.headers.raw)
    return out


def trailer_fields(trailers: Headers) -> Fields:
    out: Fields = []
    _append_regular(out, trailers.raw)
    return out


def _append_regular(out: Fields, pairs: Fields) -> bytes:
    """Append the fields HTTP/2 allows to ``out``; return the ``host`` value (or ``b""``)."""
    host = b""
    nominated: list[bytes] | None = None
    special = _SPECIAL
    for pair in pairs:
        kind = special.get(pair[0])
        if kind is None:
            out.append(pair)
        elif kind == _SECRET or (kind == _COOKIE and len(pair[1]) < _SHORT_COOKIE):
            out.append(cast(tuple[bytes, bytes], NeverIndexedHeaderTuple(pair[0], pair[1])))
        elif kind == _COOKIE:
            out.append(pair)
        elif kind == _TE:
            if b"trailers" in pair[1].lower():
                out.append((b"te", b"trailers"))
        elif kind == _HOST:
            host = host or pair[1]
        elif kind == _CONNECTION:
            nominated = (nominated or []) + [token.strip().lower() for token in pair[1].split(b",")]
    if nominated:
        out[:] = [pair for pair in out if pair[0] not in nominated]
    return host


def header_list_size(fields: Fields) -> int:
    """The SETTINGS_MAX_HEADER_LIST_SIZE measure of a field list (RFC 9113 §6.5.2)."""
    n = 32 * len(fields)
    for name, value in fields:
        n += len(name) + len(value)
    return n


def expects_continue(fields: Fields) -> bool:
    """Whether the request carries ``expect: 100-continue`` (RFC 9110 §10.1.1)."""
    for name, value in fields:
        if name == b"expect":
            return value.lower() == b"100-continue"
    return False


def request_head(fields: Fields) -> RequestHead:
    """Split a validated request field list into a :class:`RequestHead` (no copies)."""
    n = 0
    for name, _ in fields:
        if name[0] != _COLON:
            break
        n += 1
    pseudo = dict(fields[:n])
    headers = fields[n:]
    authority = pseudo.get(b":authority")
    if authority is None:  # RFC 9113 §8.3.1: fall back to Host
        authority = Headers.from_lowercase_pairs(headers).get_raw(b"host") or b""
    return RequestHead(
        method=pseudo[b":method"].decode("latin-1"),
        path=pseudo.get(b":path", b"").decode("latin-1"),
        authority=authority.decode("latin-1"),
        scheme=pseudo.get(b":scheme", b"").decode("latin-1"),
        headers=Headers.from_lowercase_pairs(headers),
        http_version="2",
    )


def response_head(fields: Fields) -> ResponseHead:
    """A validated response field list: ``:status`` is first and the only pseudo-header."""
    return ResponseHead(status=int(fields[0][1]), headers=Headers.from_lowercase_pairs(fields[1:]))
