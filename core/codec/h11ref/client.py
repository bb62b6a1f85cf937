"""Reference HTTP/1.1 client codec on h11: same interface and semantics as the fast one.

Theory of operation: one ``h11.Connection(CLIENT)`` per request frames the
request (with framing fields decided here and written explicitly) and parses
its response; h11 knows the request method, so HEAD, CONNECT and 101 need no
special casing beyond taking ``trailing_data`` into the tunnel. Each response
head is cut out and checked by ``strict.parse_response_head`` before
h11 sees it. Every upstream failure is ``ProtocolFailed(502)``.
"""

from __future__ import annotations

import h11

from plait.sdk import HeaderPairs, Headers, RequestHead, ResponseHead

from .._events import (
    ConnectionTerminated,
    Event,
    InformationalReceived,
    ResponseReceived,
    StreamReset,
    TunnelData,
)
from ..http1.rules import SEND_SPECIAL, ProtocolError, comma_tokens, interpret_head, reason_ok
from .base import (
    BIG,
    BODY,
    CLOSED,
    FAILED,
    HEAD,
    HELD,
    TUNNEL,
    W_H11,
    W_IDLE,
    W_RAW,
    RefBase,
    fields_of,
)
from .strict import ChunkChecker, parse_response_head

__all__ = ["H1ClientCodec"]

_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class H1ClientCodec(RefBase):
    """Sans-I/O HTTP/1.1 client side on h11 (the strict reference)."""

    _BAD = 502
    _TOO_LARGE = 502

    def __init__(self, *, max_header_bytes: int = 60 * 1024) -> None:
        super().__init__(max_header_bytes)
        self._state = HELD  # nothing expected
        self._sid = 0
        self._req_head = False
        self._in_flight = False
        self._req_connect = self._req_upgrade = self._req_close = False
        self._rclose = False

    @property
    def keep_alive(self) -> bool:
        return not (self._dead or self._req_close or self._rclose)

    @property
    def idle(self) -> bool:
        return not self._in_flight and self._wmode == W_IDLE and not self._dead

    # -- send side ----------------------------------------------------------

    def send_request(
        self, head: RequestHead, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None:
        """Frame a request (see the fast codec for the framing rules)."""
        if not self.idle:
            raise RuntimeError("the connection is not idle")
        method = head.method.encode("latin-1")
        fields: HeaderPairs = [(b"host", head.authority.encode("latin-1"))]
        length: bytes | None = None
        close = False
        upgrade_value: bytes | None = None
        for name, value in head.headers.raw:
            if name not in SEND_SPECIAL:
                fields.append((name, value))
            elif name == b"content-length":
                length = value
            elif name == b"connection":
                close = close or b"close" in comma_tokens(value)
            elif name == b"upgrade":
                upgrade_value = value
            elif name == b"te" and b"trailers" in comma_tokens(value):
                fields.append((b"te", b"trailers"))
        if upgrade:
            if upgrade_value is None:
                raise ValueError("upgrade=True needs an upgrade field in the head")
            fields += [(b"upgrade", upgrade_value), (b"connection", b"upgrade")]
        elif close:
            fields.append((b"connection", b"close"))
        connect = method == b"CONNECT"
        self._wleft, self._wchunked = None, False
        if connect or upgrade:
            if body:
                raise ValueError("an upgrade or CONNECT request has no content")
        elif length is not None or end_stream:
            if length is None:
                length = b"%d" % len(body)
                if body or method in _BODY_METHODS:
                    fields.append((b"content-length", length))
            elif length.isdigit():
                fields.append((b"content-length", length))
            else:
                raise ValueError("invalid content-length")
            self._wleft = int(length)
        else:
            self._wchunked = True
            fields.append((b"transfer-encoding", b"chunked"))
        left = self._wleft
        if left is not None and (len(body) > left or (end_stream and len(body) != left)):
            raise ValueError(f"body does not match content-length {left}")  # nothing written
        self._sender = h11.Connection(h11.CLIENT, max_incomplete_event_size=BIG)
        self._send(h11.Request, method=method, target=head.path.encode("latin-1"), headers=fields)
        self._sid += 1
        self._rsid = self._sid
        self._in_flight = True
        self._state = HEAD
        self._req_connect, self._req_upgrade, self._req_close = connect, upgrade, close
        self._req_head = method == b"HEAD"
        self._rclose = False
        self._conn = self._sender  # the same h11 connection parses the response
        self._wmode = W_H11
        if connect or upgrade:
            self._send(h11.EndOfMessage)
            self._wmode = W_RAW
        elif body or end_stream:
            self._write_body(body, end_stream)

    def _finish_write(self) -> None:
        self._wmode = W_IDLE

    # -- receive side -------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the server; ``b""`` means the server closed (EOF)."""
        if not data:
            return self._eof()
        if self._state == TUNNEL:
            return [TunnelData(data)]
        if self._state in (CLOSED, FAILED):
            return []
        if self._state == HELD:
            events: list[Event] = []
            self._events = events
            self._fail(502, "unsolicited bytes from the server")
            return events
        return self._receive(data)

    def _eof(self) -> list[Event]:
        state = self._state
        if state == FAILED:
            return []
        if state == BODY and self._rclose and self._conn is not None:
            events: list[Event] = []
            self._events = events
            self._conn.receive_data(b"")
            try:
                self._drain()  # RFC 9112 §6.3 (8): EOF ends a close-delimited body
            except (h11.RemoteProtocolError, ProtocolError):
                events = [StreamReset(self._rsid, remote=True)]
            self._dead, self._state, self._in_flight = True, CLOSED, False
            return events
        self._dead = True
        self._state = CLOSED
        if self._in_flight:
            return [StreamReset(self._rsid, remote=True)]
        return [ConnectionTerminated()]

    def _on_head(self, head: bytes) -> bool:
        version, status, specials = parse_response_head(head)
        if status >= 200:
            interpret_head(specials, [], http11=version == b"1.1", request=False)
        conn = self._conn
        conn.receive_data(head)
        response = conn.next_event()
        if type(response) not in (h11.Response, h11.InformationalResponse):
            raise ProtocolError(502, "incomplete response head")
        if not reason_ok(bytes(response.reason)):
            raise ProtocolError(502, "invalid reason phrase")
        headers = fields_of(response.headers)
        resp = ResponseHead(
            status=status,
            headers=Headers.from_lowercase_pairs(headers),
            reason=response.reason.decode("latin-1"),
        )
        if status < 200:
            if status != 101:
                self._events.append(InformationalReceived(self._rsid, resp))
                return False
            if not self._req_upgrade:
                raise ProtocolError(502, "101 Switching Protocols without an Upgrade request")
            headers.extend(p for p in specials if p[0] == b"upgrade")
            self._events.append(ResponseReceived(self._rsid, resp, False))
            self._open_tunnel()
            return False
        _, length, chunked, close, _, _ = interpret_head(
            specials, headers, http11=version == b"1.1", request=False
        )
        event = ResponseReceived(self._rsid, resp, False)
        self._events.append(event)
        no_body = self._req_head or status in (204, 304)
        self._rclose = close or (
            length is None and not chunked and not no_body
        )  # RFC 9112 §6.3 (8)
        if self._req_connect and status < 300:
            self._open_tunnel()
            return False
        self._cur = event
        self._checker = ChunkChecker(self._max, 502) if chunked else None
        self._state = BODY
        return True

    def _open_tunnel(self) -> None:
        # Only the head was fed to h11; _one_head passes the bytes after it on.
        self._state = TUNNEL
        self._in_flight = False
        self._dead = True
        self._wmode = W_RAW
        self._conn = None

    def _after_message(self, trailing: bytes) -> None:
        self._in_flight = False
        if self._wmode == W_RAW:
            self._wmode = W_IDLE  # the upgrade or CONNECT was refused: no tunnel
        if self._wmode != W_IDLE:
            self._dead = True
        if self._rclose:
            self._rclose = self._dead = True
            self._state = CLOSED
        else:
            self._state = HELD
            if trailing:
                self._fail(502, "unsolicited bytes from the server")
