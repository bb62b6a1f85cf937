"""HTTP/1.1 message rules shared by the fast codec and the h11 reference codec.

Theory of operation: a parser (llhttp via httptools, or h11) checks the
*syntax* of a head; this module decides what a syntactically valid head
*means* for a proxy: which request target forms are allowed, how the body is
framed, whether the connection persists, whether it is an upgrade, and which
hop-by-hop fields are removed. Both codecs call :func:`interpret_head` with
the header fields they set aside while parsing (names in :data:`SPECIAL`), so
both reach the same decision; the differential tests then only have to show
that the two *parsers* accept and reject the same bytes.

Invariants:
  * every rule here rejects by raising :class:`ProtocolError`, never another
    exception, and never mutates anything on failure but the ``headers`` list
    it was handed;
  * framing is unambiguous after :func:`interpret_head` returns: at most one
    of ``length`` (not None) and ``chunked`` holds (RFC 9112 §6.3, the
    request-smuggling rules).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from plait.sdk import HeaderPairs

__all__ = [
    "HTTP_METHODS",
    "SEND_SPECIAL",
    "SPECIAL",
    "STATUS_LINES",
    "STATUS_REASONS",
    "HeadFacts",
    "ProtocolError",
    "add_field",
    "check_host",
    "check_target",
    "comma_tokens",
    "crlf_free",
    "interpret_head",
    "is_token",
    "length_value",
    "reason_ok",
    "reason_phrase",
    "simple_framing",
    "status_line",
    "unknown_method_status",
]


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; ``status`` is the status to answer (or 502 upstream)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Methods llhttp knows in HTTP (not RTSP) mode. An unknown but well-formed method
# is answered 501 (RFC 9110 §9.1), a malformed one 400. PRI (the HTTP/2 preface)
# is left out: it is answered 505 like any other HTTP/2 request line.
HTTP_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE "
    b"QUERY".split()
)

# Fields a parser sets aside for interpret_head instead of passing through.
SPECIAL: Final = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
        b"expect",
    }
)
# Fields a sender never copies from a head as given: it writes its own framing
# and connection management (RFC 9110 §7.6.1 hop-by-hop fields).
SEND_SPECIAL: Final = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
    }
)

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 3986 §3.2.2 reg-name (unreserved, pct-encoded, sub-delims), IP-literal, ":" port.
_HOST_CHARS = _ALPHA + b"0123456789-._~!$&'()*+,;=%:[]"
_VCHARS = bytes(range(0x21, 0x7F))
# RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
_REASON_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


def crlf_free(value: bytes) -> bool:
    """True if ``value`` holds no CR and no LF: what a field must be to go on the wire.

    Two ``memchr`` searches in C (an int in bytes is a byte search): as cheap as one
    ``translate`` pass for a short field and cheaper for a long one (a translate copies
    the value to compare it), with no allocation."""
    return 13 not in value and 10 not in value


def add_field(parts: list[bytes], name: bytes, value: bytes) -> None:
    """Append a field's line (``name: value`` CRLF) to the parts of a head being sent;
    ``ValueError`` if either holds a CR or LF (request smuggling, response splitting)."""
    if not (crlf_free(name) and crlf_free(value)):
        raise ValueError("CR or LF in a header name or value")
    parts.append(name)
    parts.append(b": ")
    parts.append(value)
    parts.append(b"\r\n")


def is_token(value: bytes) -> bool:
    """RFC 9110 §5.6.2 ``token``."""
    return bool(value) and not value.translate(None, _TCHAR)


def reason_ok(reason: bytes) -> bool:
    return not reason.translate(None, _REASON_CHARS)


def comma_tokens(value: bytes) -> list[bytes]:
    """Lower-cased elements of a ``#token`` list (RFC 9110 §5.6.1)."""
    return [t.strip(b" \t").lower() for t in value.split(b",")]


def unknown_method_status(line: bytes) -> int:
    """The status for a request line whose method is not one we implement.

    RFC 9110 §9.1: 501 for a well-formed request line (RFC 9112 §3) with an
    unknown method; 400 when the line itself is malformed; 505 for ``PRI``,
    the HTTP/2 connection preface.
    """
    method, _, rest = line.partition(b" ")
    if method == b"PRI":
        return 505
    target, _, version = rest.partition(b" ")
    well_formed = (
        is_token(method)
        and bool(target)
        and not target.translate(None, _VCHARS)
        and len(version) == 8
        and version.startswith(b"HTTP/")
        and version[5:6].isdigit()
        and version[6:7] == b"."
        and version[7:].isdigit()
    )
    return 501 if well_formed else 400


def check_target(method: bytes, target: bytes) -> tuple[bytes, bytes] | None:
    """The request-target forms of RFC 9112 §3.2, by method; an absolute-form target as
    ``(authority, origin-form)``, else ``None``.

    origin-form (``/p?q``) for any method but CONNECT; absolute-form
    (``scheme://authority/...``) for any method but CONNECT; authority-form
    (``host:port``) only and always for CONNECT (§3.2.3); asterisk-form (``*``)
    only for OPTIONS (§3.2.4). Stricter than RFC 3986 where llhttp is: the
    scheme is letters only; and userinfo is refused (RFC 9110 §4.2.4).

    An absolute-form target is what a client sends to a proxy (an app with ``HTTP_PROXY``
    set to its sidecar): the sidecar is that proxy, so the target's authority replaces
    ``Host`` (§3.2.2) and the request goes on in origin-form, as an origin server and an
    HTTP/2 ``:path`` expect it (an empty path is ``/``, or ``*`` for OPTIONS, §3.2.4).
    """
    if method == b"CONNECT":
        host, sep, port = target.rpartition(b":")
        if not (sep and host and port.isdigit() and not host.translate(None, _HOST_CHARS)):
            raise ProtocolError(400, "CONNECT needs an authority-form target")
        return None
    if target[:1] == b"/":
        return None
    if target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError(400, "asterisk-form target is only for OPTIONS")
        return None
    scheme, sep, rest = target.partition(b"://")
    if not (sep and scheme and not scheme.translate(None, _ALPHA)):
        raise ProtocolError(400, "invalid request target")
    authority, path = rest, b""
    for i, c in enumerate(rest):
        if c in (0x2F, 0x3F):  # "/" or "?" ends the authority
            authority, path = rest[:i], rest[i:]
            break
    if not authority or authority.translate(None, _HOST_CHARS):
        raise ProtocolError(400, "invalid authority in an absolute-form target")
    if path[:1] != b"/":
        path = (b"*" if method == b"OPTIONS" and not path else b"/") + path
    return authority, path


# (authority, length, chunked, close, upgrade, expect_continue)
HeadFacts = tuple[bytes, int | None, bool, bool, bool, bool]


def interpret_head(
    specials: HeaderPairs,
    headers: HeaderPairs,
    *,
    http11: bool,
    request: bool,
    connect: bool = False,
) -> HeadFacts:
    """Decide framing and connection handling from the set-aside fields.

    ``specials`` are the ``(lower-case name, stripped value)`` pairs whose name
    is in :data:`SPECIAL` (responses: the same set), in arrival order.
    ``headers`` is the pass-through list; the fields that stay part of the
    message (``content-length``, ``te: trailers``, an accepted ``upgrade``,
    ``expect`` other than ``100-continue``) are appended to it, and fields
    nominated by ``Connection`` are removed from it (RFC 9110 §7.6.1).
    ``connect`` says the request method is CONNECT.

    Raises:
        ProtocolError: 400 for requests (502 for responses) on ambiguous or
            invalid framing; 501 for an unsupported transfer coding.
    """
    bad = 400 if request else 502
    hosts: list[bytes] = []
    length: int | None = None
    codings: list[bytes] = []
    conn: list[bytes] = []
    upgrade_value: bytes | None = None
    expect_continue = False
    for name, value in specials:
        if not request and name in (b"host", b"expect"):
            headers.append((name, value))  # end-to-end fields in a response
        elif name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            # RFC 9112 §6.3 (5) and RFC 9110 §8.6: a list or repeated field is
            # invalid framing; we reject rather than collapse identical values.
            if length is not None or (length := length_value(value)) < 0:
                raise ProtocolError(bad, "invalid or repeated Content-Length")
            headers.append((name, value))
        elif name == b"transfer-encoding":
            codings += comma_tokens(value)
        elif name == b"connection":
            conn += comma_tokens(value)
        elif name == b"upgrade":
            upgrade_value = value
        elif name == b"te":
            if b"trailers" in comma_tokens(value):
                headers.append((b"te", b"trailers"))  # the only TE value a proxy forwards
        elif name == b"expect":
            if value.lower() == b"100-continue":
                expect_continue = http11  # RFC 9110 §10.1.1: ignored from HTTP/1.0
            else:
                headers.append((name, value))
    authority = _check_hosts(hosts, http11) if request else b""
    chunked = False
    if codings:
        chunked = _check_codings(codings, length, http11, bad)
    close = b"close" in conn or (not http11 and b"keep-alive" not in conn)
    # RFC 9110 §7.8: Upgrade needs the "upgrade" connection option and is
    # ignored in HTTP/1.0.
    asks_upgrade = upgrade_value is not None and b"upgrade" in conn and request
    upgrade = asks_upgrade and http11
    if upgrade and upgrade_value is not None:
        headers.append((b"upgrade", upgrade_value))
    if (asks_upgrade or connect) and (chunked or length):
        # Bytes after such a head are held for a tunnel and parsed as the next
        # request if it is refused: a body there would be a smuggling vector.
        # RFC 9110 §9.3.6: CONNECT has no content; §7.8 lets a server refuse.
        # Also from HTTP/1.0, where the upgrade is ignored: llhttp still ends
        # the message at the head, so the body would be read as a request.
        raise ProtocolError(400, "Upgrade or CONNECT request with content")
    nominated = [t for t in conn if t not in _CONN_OPTIONS]
    if nominated:
        headers[:] = [p for p in headers if p[0] not in nominated]
    return authority, length, chunked, close, upgrade, expect_continue


_CONN_OPTIONS: Final = frozenset({b"close", b"keep-alive", b"upgrade", b""})
# A lone Connection value that needs no token-list parsing: does it close?
_SIMPLE_CONN: Final = {
    b"close": True, b"keep-alive": False, b"Close": True, b"Keep-Alive": False,
}  # fmt: skip
"""``connection`` values :func:`simple_framing` takes, in the spellings seen on the wire
(any other case goes through ``lower()``)."""


def length_value(value: bytes) -> int:
    """A ``content-length`` value as a number: 1 to 18 ASCII digits (RFC 9110 §8.6), else -1.

    A loop over the bytes compiled to C: ``bytes.isdigit()`` and ``int(bytes)`` are two
    generic calls, and ``int`` goes through the text parser."""
    n = len(value)
    if n == 0 or n > 18:
        return -1
    total = 0
    for i in range(n):
        c = value[i]
        if c < 48 or c > 57:
            return -1
        total = total * 10 + c - 48
    return total


def simple_framing(
    specials: HeaderPairs, headers: HeaderPairs, http11: bool, request: bool
) -> tuple[bytes, int | None, bool] | None:
    """:func:`interpret_head` for the common heads, several times cheaper; None if not one.

    Handles one ``host`` (requests only; required), at most one plain-digit
    ``content-length`` and at most one ``connection`` of just ``close`` or
    ``keep-alive``; anything else (and any repetition) is left to
    :func:`interpret_head`, which then sees ``headers`` untouched. Returns
    ``(host, length, close)`` with interpret_head's meaning (host b"" for a
    response); the caller still checks the host, and must not use this for
    CONNECT.
    """
    host = length = conn = None
    size = 0
    for name, value in specials:
        if name == b"host" and host is None:
            host = value
        elif name == b"content-length" and length is None:
            length = value
            size = length_value(value)
            if size < 0:
                return None
        elif name == b"connection" and conn is None:
            conn = _SIMPLE_CONN.get(value)
            if conn is None:
                conn = _SIMPLE_CONN.get(value.lower())
                if conn is None:
                    return None
        else:
            return None
    if (host is None) is request:
        return None
    close = not http11 if conn is None else conn
    if length is not None:
        headers.append((b"content-length", length))
        return host or b"", size, close
    return host or b"", None, close


def check_host(host: bytes) -> None:
    """RFC 9112 §3.2: 400 for a Host value that is not ``uri-host [":" port]``."""
    if host.translate(None, _HOST_CHARS):
        raise ProtocolError(400, "invalid Host")


def _check_hosts(hosts: list[bytes], http11: bool) -> bytes:
    # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for more
    # than one Host line.
    if len(hosts) > 1 or (http11 and not hosts):
        raise ProtocolError(400, "missing or repeated Host")
    if not hosts:
        return b""
    check_host(hosts[0])
    return hosts[0]


def _check_codings(codings: list[bytes], length: int | None, http11: bool, bad: int) -> bool:
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
    # RFC 9112 §6.3 (3): Transfer-Encoding with Content-Length is a smuggling
    # attempt (a request MUST be rejected; a proxy must not forward either).
    if not http11 or length is not None:
        raise ProtocolError(bad, "Transfer-Encoding with Content-Length or in HTTP/1.0")
    # RFC 9112 §6.3 (4) / §7: the final coding must be chunked, exactly once.
    # Empty list elements are rejected too (stricter than RFC 9110 §5.6.1, like llhttp).
    if codings[-1] != b"chunked" or codings.count(b"chunked") != 1 or b"" in codings:
        raise ProtocolError(bad, "invalid Transfer-Encoding")
    if len(codings) != 1:
        # RFC 9112 §6.1: a coding we do not implement (we cannot re-apply it).
        raise ProtocolError(501 if bad == 400 else bad, "unsupported transfer coding")
    return True


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (RFC 9110 §15), or b""."""
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b""


_reason = reason_phrase


STATUS_LINES: Final[dict[int, bytes]] = {
    s: b"HTTP/1.1 %d %s\r\n" % (s, _reason(s)) for s in range(100, 600) if _reason(s)
}
STATUS_REASONS: Final = frozenset(_reason(s) for s in range(100, 600)) | {b"OK"}


_LINE_CACHE: Final[dict[tuple[int, str], bytes]] = {}


def status_line(status: int, reason: str) -> bytes:
    """``HTTP/1.1 <status> <reason>`` CRLF; the standard phrase when ``reason`` is empty."""
    if not reason:
        line = STATUS_LINES.get(status)
        if line is not None:
            return line
    line = _LINE_CACHE.get((status, reason))
    if line is not None:
        return line
    line = _status_line(status, reason)
    if len(_LINE_CACHE) < 4096:  # validated lines only; bounded against odd upstreams
        _LINE_CACHE[(status, reason)] = line
    return line


def _status_line(status: int, reason: str) -> bytes:
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status {status}")
    phrase = reason.encode("latin-1")
    if not reason_ok(phrase) or b"\r" in phrase or b"\n" in phrase:
        raise ValueError("invalid reason phrase")
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)
