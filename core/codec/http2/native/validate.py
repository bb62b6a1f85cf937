"""Inbound HTTP/2 field blocks: what makes a message malformed (RFC 9113 §8.1.1, §8.2, §8.3).

Theory of operation: one pass over a decoded field list checks every field
(§8.2.1: a lower-case name of visible ASCII without a colon past the first
octet; a value without NUL, CR or LF and not starting or ending in SP or HTAB),
refuses the connection-specific fields (§8.2.2) and a ``te`` other than
``trailers``, and follows the pseudo-header fields (§8.3: only the known ones,
each at most once, all before the first regular field). The block's kind then
decides which pseudo-header fields it must and may carry: a request ``:method``,
and ``:scheme`` and ``:path`` unless it is an ordinary CONNECT, which must carry
neither; a request has ``:authority`` or ``host`` and, with both, the same value;
a response ``:status`` alone; trailers none. Split ``cookie`` fields are joined
with ``"; "`` (§8.2.3), the joined field last, as the ``h2`` reference does.

A violation raises :class:`Malformed`, a stream error of type PROTOCOL_ERROR: the
caller resets that one stream and keeps the connection.

``content_length`` parses the ``content-length`` field a request or response may
carry (§8.1.1: the DATA received must add up to it).
"""

from __future__ import annotations

from typing import Final

from hpack import NeverIndexedHeaderTuple

__all__ = ["REQUEST", "RESPONSE", "TRAILERS", "Malformed", "content_length", "validate"]

REQUEST: Final = 0
RESPONSE: Final = 1
TRAILERS: Final = 2

_CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_COLON: Final = 58
_BAD_NAME: Final = bytes(c for c in range(256) if c <= 0x20 or 0x41 <= c <= 0x5A or c >= 0x7F)
_GOOD_NAMES: Final[set[bytes]] = set()
"""Names that passed the name check: a peer repeats the same few, so each is checked once
(up to :data:`_GOOD_NAMES_MAX`, so that a peer sending random names cannot grow it)."""
_GOOD_NAMES_MAX: Final = 4096


class Malformed(Exception):
    """A malformed message: a stream error of type PROTOCOL_ERROR."""


Fields = list[tuple[bytes, bytes]]


def validate(fields: Fields, kind: int) -> Fields:
    """Check ``fields`` as a block of ``kind``; returns it (cookies joined) or raises."""
    pseudo: dict[bytes, bytes] = {}
    good = _GOOD_NAMES
    regular = False
    host: bytes | None = None
    cookies = 0
    for field in fields:
        name = field[0]
        value = field[1]
        if not name:
            raise Malformed("empty field name")
        if name[0] == _COLON:
            if regular:
                raise Malformed(f"pseudo-header field {name!r} after a regular field")
            if name in pseudo:
                raise Malformed(f"duplicate pseudo-header field {name!r}")
            if name not in _REQUEST_PSEUDO and name != b":status":
                raise Malformed(f"unknown pseudo-header field {name!r}")
            pseudo[name] = value
            rest = name[1:]
        else:
            regular = True
            rest = name
            if name in _CONNECTION_SPECIFIC:
                raise Malformed(f"connection-specific field {name!r}")
            if name == b"te" and value != b"trailers":
                raise Malformed(f"te field of {value!r}")
            if name == b"host":
                if host is not None:
                    raise Malformed("more than one host field")
                host = value
            elif name == b"cookie":
                cookies += 1
        if name not in good:
            if len(rest.translate(None, _BAD_NAME)) != len(rest) or b":" in rest:
                raise Malformed(f"invalid field name {name!r}")
            if len(good) < _GOOD_NAMES_MAX:
                good.add(name)
        if value:
            if 0 in value or 10 in value or 13 in value:  # NUL, LF, CR (int: a memchr)
                raise Malformed(f"invalid character in the value of {name!r}")
            if value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09):
                raise Malformed(f"value of {name!r} surrounded by whitespace")
    _check_pseudo(pseudo, kind, host)
    if cookies > 1:
        return _join_cookies(fields)
    return fields


def _check_pseudo(pseudo: dict[bytes, bytes], kind: int, host: bytes | None) -> None:
    if kind == TRAILERS:
        if pseudo:
            raise Malformed("pseudo-header fields in trailers")
        return
    if kind == RESPONSE:
        if b":status" not in pseudo or len(pseudo) > 1:
            raise Malformed("a response carries :status and no other pseudo-header field")
        return
    method = pseudo.get(b":method")
    if method is None:
        raise Malformed("request without :method")
    if b":status" in pseudo:
        raise Malformed(":status in a request")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise Malformed("CONNECT with :scheme or :path")
    else:
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise Malformed("request without :scheme or :path")
        if b":protocol" in pseudo and method != b"CONNECT":
            raise Malformed(":protocol outside CONNECT")
    path = pseudo.get(b":path")
    if path is not None and not path:
        raise Malformed("empty :path")
    authority = pseudo.get(b":authority")
    if authority is None and host is None:
        raise Malformed("request without :authority or host")
    if authority is not None and host is not None and authority != host:
        raise Malformed(":authority and host differ")


def _join_cookies(fields: Fields) -> Fields:
    out: Fields = []
    cookies: list[bytes] = []
    for field in fields:
        if field[0] == b"cookie":
            cookies.append(field[1])
        else:
            out.append(field)
    out.append(NeverIndexedHeaderTuple(b"cookie", b"; ".join(cookies)))
    return out


def content_length(fields: Fields) -> int:
    """The ``content-length`` of a validated block, ``-1`` without one; raises if invalid."""
    found = -1
    for name, value in fields:
        if name == b"content-length":
            if not value.isdigit():
                raise Malformed(f"content-length of {value!r}")
            n = int(value)
            if found >= 0 and n != found:
                raise Malformed("content-length fields that differ")
            found = n
    return found
