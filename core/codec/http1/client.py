"""Fast HTTP/1.1 client codec (upstream side): frames requests, parses responses.

Theory of operation: one request at a time (no pipelining upstream: a pool
uses more connections instead). ``send_request`` writes the head and moves
the reader from idle to expecting a response; :class:`~.base.H1Base`
cuts the response into segments for llhttp, and this module decides what the
response head means: 1xx other than 101 are ``InformationalReceived`` and the
real response follows; a 101 to an Upgrade request, or a 2xx to CONNECT,
turns the connection into a tunnel; a response to HEAD, a 204 and a 304 have
no body whatever their headers say (RFC 9112 §6.3 (1)).

Every upstream failure is ``ProtocolFailed(502)``: the proxy answers its
downstream client 502 Bad Gateway. Bytes that arrive while no request is in
flight are such a failure too (the connection is then unusable).

Invariants: ``_in_flight`` is true from ``send_request`` until the response
ends; ``_rstate`` is ``R_HELD`` ("nothing expected") while it is false.
"""

from __future__ import annotations

from typing import Final

from httptools import HttpResponseParser

from plait.sdk import Headers, RequestHead, ResponseHead

from .._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalReceived,
    ResponseReceived,
    StreamReset,
    TunnelData,
)
from .base import (
    R_CHUNKED,
    R_CLOSED,
    R_EOF_BODY,
    R_FAILED,
    R_HEAD,
    R_HELD,
    R_LENGTH,
    R_TUNNEL,
    W_CHUNKED,
    W_IDLE,
    W_LENGTH,
    W_RAW,
    H1Base,
)
from .rules import (
    HTTP_METHODS,
    SEND_SPECIAL,
    STATUS_REASONS,
    ProtocolError,
    add_field,
    comma_tokens,
    crlf_free,
    interpret_head,
    length_value,
    reason_ok,
    simple_framing,
)

__all__ = ["H1ClientCodec"]

_REASON_STR: Final = {r: r.decode("latin-1") for r in STATUS_REASONS}
# RFC 9110 §8.6: send Content-Length: 0 for an empty body where content has meaning.
_BODY_METHODS: Final = frozenset({b"POST", b"PUT", b"PATCH"})
_METHOD_BYTES: Final = {m.decode(): m for m in HTTP_METHODS}


class H1ClientCodec(H1Base):
    """Sans-I/O HTTP/1.1 client side on llhttp (httptools). See the module docstring."""

    __slots__ = (
        "_in_flight",
        "_line",
        "_line_authority",
        "_line_method",
        "_line_path",
        "_rclose",
        "_req_close",
        "_req_connect",
        "_req_head",
        "_req_upgrade",
        "_sid",
    )
    _BAD = 502
    _TOO_LARGE = 502

    def __init__(self, *, max_header_bytes: int = 60 * 1024) -> None:
        super().__init__(HttpResponseParser, max_header_bytes)
        self._rstate = R_HELD
        self._sid = 0
        self._in_flight = False
        self._req_head = self._req_connect = self._req_upgrade = self._req_close = False
        self._rclose = False  # the response being read closes the connection
        # The last request's method, path and authority, and its request and host lines:
        # a connection mostly sends the same request again, so they are encoded once.
        self._line_method = self._line_path = self._line_authority = "\0"
        self._line = b""

    @property
    def keep_alive(self) -> bool:
        """Can the connection carry another request once this exchange completes?"""
        return not (self._dead or self._req_close or self._rclose)

    @property
    def idle(self) -> bool:
        """No request in flight and the connection is usable: ``send_request`` may be called."""
        return not self._in_flight and self._wmode == W_IDLE and not self._dead

    # -- send side ----------------------------------------------------------

    def send_request(
        self, head: RequestHead, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None:
        """Frame a request: ``HTTP/1.1``, ``host`` first, then the head's fields.

        Framing: the given ``content-length``; else none when ``end_stream``
        (``content-length`` of ``body`` when there is one, or for
        POST/PUT/PATCH); else chunked. ``upgrade=True`` writes
        ``connection: upgrade`` and needs an ``upgrade`` field in the head.
        An upgrade or CONNECT request has no content (plait's server side
        refuses one with content): ``end_stream`` is ignored, and after a 101
        (2xx for CONNECT) ``send_data`` writes raw tunnel bytes.

        Raises:
            RuntimeError: the connection is not idle.
            ValueError: CR/LF in the head, a missing ``upgrade`` field, or a
                body that overruns the content-length.
        """
        if self._in_flight or self._wmode != W_IDLE or self._dead:  # not self.idle
            raise RuntimeError("the connection is not idle")
        method = _METHOD_BYTES.get(head.method)
        if method is None:
            method = _clean(head.method.encode("latin-1"))
        if not (
            head.path == self._line_path and head.method == self._line_method
            and head.authority == self._line_authority
        ):  # fmt: skip
            self._line = b"".join((
                method, b" ", _clean(head.path.encode("latin-1")), b" HTTP/1.1\r\nhost: ",
                _clean(head.authority.encode("latin-1")), b"\r\n",
            ))  # fmt: skip
            self._line_method, self._line_path = head.method, head.path
            self._line_authority = head.authority
        # The head as parts joined once (few of them: up to ten, the join needs no array of
        # its own): each field is checked for CR and LF where it goes in (a search of that
        # field, not of the whole head), and nothing is %-formatted.
        parts = [self._line]
        length: bytes | None = None
        close = False
        upgrade_value: bytes | None = None
        for name, value in head.headers.raw:
            if name in SEND_SPECIAL:
                if name == b"content-length":
                    length = value
                elif name == b"connection":
                    close = close or b"close" in comma_tokens(value)
                elif name == b"upgrade":
                    upgrade_value = value
                elif name == b"te" and b"trailers" in comma_tokens(value):
                    parts.append(b"te: trailers\r\n")
                continue
            add_field(parts, name, value)
        connect = method == b"CONNECT"
        if upgrade:
            if upgrade_value is None:
                raise ValueError("upgrade=True needs an upgrade field in the head")
            parts += (b"upgrade: ", _clean(upgrade_value), b"\r\nconnection: upgrade\r\n")
        elif close:
            parts.append(b"connection: close\r\n")
        wleft = 0
        if connect or upgrade:
            if body:
                raise ValueError("an upgrade or CONNECT request has no content")
            mode = W_RAW  # RFC 9110 §9.3.6: no content; tunnel bytes follow a 2xx/101
        elif length is not None:
            mode, wleft = W_LENGTH, length_value(length)
            if wleft < 0:
                raise ValueError("invalid content-length")
            parts += (b"content-length: ", length, b"\r\n")
        elif end_stream:
            mode, wleft = W_LENGTH, len(body)
            if body or method in _BODY_METHODS:
                parts.append(b"content-length: %d\r\n" % wleft)
        else:
            mode = W_CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        whole = False
        if mode == W_LENGTH:
            if len(body) > wleft or (end_stream and len(body) < wleft):
                raise ValueError(f"body length does not match content-length {wleft}")
            whole = end_stream  # the whole request at once: head and body in one bytes
        parts.append(b"\r\n")
        if whole and body:
            parts.append(body)
        block = b"".join(parts)
        self._out.append(block)
        self._sid += 1
        self._rsid = self._sid
        self._in_flight = True
        self._rstate = R_HEAD
        self._req_head = method == b"HEAD"
        self._req_connect = connect
        self._req_upgrade = upgrade
        self._req_close = close
        self._rclose = False
        if whole:
            return  # _wmode stays W_IDLE
        self._wmode = mode
        self._wleft = wleft
        if (body or end_stream) and mode != W_RAW:
            self._write_body(body, end_stream)

    def _finish_write(self) -> None:
        self._wmode = W_IDLE

    # -- receive side -------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the server; ``b""`` means the server closed (EOF)."""
        if not data:
            return self._eof()
        state = self._rstate
        if state == R_TUNNEL:
            return [TunnelData(data)]
        if state in (R_CLOSED, R_FAILED):
            return []
        events = self._receive(data)
        if self._held:  # bytes beyond the response, or with no request in flight
            self._held.clear()
            self._fail(502, "unsolicited bytes from the server")
        return events

    def _eof(self) -> list[Event]:
        state = self._rstate
        if state == R_FAILED:
            return []
        self._dead = True
        self._rstate = R_CLOSED
        if state == R_EOF_BODY:  # RFC 9112 §6.3 (8): EOF ends a close-delimited body
            self._in_flight = False
            return [DataReceived(self._rsid, b"", True)]
        if self._in_flight:
            return [StreamReset(self._rsid, remote=True)]
        return [ConnectionTerminated()]

    def _on_head(self, raw: bytes) -> None:
        sink = self._sink
        reason, sink.status = sink.status, b""
        headers, sink.headers = sink.headers, []
        specials, sink.specials = sink.specials, []
        status = self._parser.get_status_code()
        p = len(raw) - len(raw.lstrip(b"\r\n")) if raw[0] < 33 else 0
        # llhttp accepted "HTTP/" DIGIT "." DIGIT SP, and only 0.9, 1.0, 1.1 or 2.0.
        if raw[p + 5] != 0x31:
            raise ProtocolError(502, "HTTP version not supported")
        http11 = raw[p + 7] == 0x31
        if not 100 <= status <= 599:
            raise ProtocolError(502, "invalid status code")
        if reason not in STATUS_REASONS and not reason_ok(reason):
            raise ProtocolError(502, "invalid reason phrase")
        response = ResponseHead(
            status=status,
            headers=Headers.from_lowercase_pairs(headers),
            reason=_REASON_STR.get(reason) or reason.decode("latin-1"),
        )
        if status < 200:
            self._on_1xx(response, specials)
            return
        length: int | None
        simple = simple_framing(specials, headers, http11, False)
        if simple is not None:
            _, length, close = simple
            chunked = False
        else:
            _, length, chunked, close, _, _ = interpret_head(
                specials, headers, http11=http11, request=False
            )
        event = ResponseReceived(self._rsid, response, False)
        self._events.append(event)
        self._rclose = close
        if self._req_connect and status < 300:
            self._open_tunnel()
        elif self._req_head or status in (204, 304) or sink.done:
            if not sink.done:
                self._reset_parser()  # llhttp does not know the request was HEAD
            sink.done = False
            event.end_stream = True
            self._after_message()
        elif chunked:
            self._rstate = R_CHUNKED
            self._cur = event
        elif length:
            self._rstate = R_LENGTH
            self._remaining = length
            self._cur = event
        else:  # RFC 9112 §6.3 (8): close-delimited
            self._rstate = R_EOF_BODY
            self._rclose = True
            self._cur = event

    def _on_1xx(self, response: ResponseHead, specials: list[tuple[bytes, bytes]]) -> None:
        if response.status == 101:
            if not self._req_upgrade:
                raise ProtocolError(502, "101 Switching Protocols without an Upgrade request")
            response.headers.raw.extend(p for p in specials if p[0] == b"upgrade")
            self._events.append(ResponseReceived(self._rsid, response, False))
            self._open_tunnel()
            return
        self._events.append(InformationalReceived(self._rsid, response))
        # A fresh parser for the final response: llhttp would refuse more bytes
        # after an HTTP/1.0 1xx, or wait for a body after an odd one.
        self._reset_parser()

    def _open_tunnel(self) -> None:
        self._rstate = R_TUNNEL
        self._in_flight = False
        self._dead = True
        self._wmode = W_RAW

    def _after_message(self) -> None:
        self._in_flight = False
        if self._wmode == W_RAW:
            self._wmode = W_IDLE  # the upgrade or CONNECT was refused: no tunnel
        if self._wmode != W_IDLE:
            self._dead = True  # answered before the request body was sent
        if self._rclose:
            self._dead = True
            self._rstate = R_CLOSED
        else:
            self._rstate = R_HELD


def _clean(value: bytes) -> bytes:
    """``value``, which goes into a request line or a header: refused if it holds a CR or
    LF (request splitting)."""
    if not crlf_free(value):
        raise ValueError("CR or LF in the request line or a header")
    return value
