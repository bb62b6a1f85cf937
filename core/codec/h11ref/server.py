"""Reference HTTP/1.1 server codec on h11: same interface and semantics as the fast one.

Theory of operation: see ``base``. Per request: the head is cut out,
checked by ``strict.parse_request_head``, parsed by a fresh
``h11.Connection(SERVER)``, and interpreted by the rules shared with the fast
codec. Per response: a fresh ``h11.Connection(SERVER)`` is primed with a
synthetic request that has the properties the framing depends on (HEAD,
CONNECT, Upgrade, HTTP/1.0 for a close-delimited body) and then frames the
response; the framing fields are decided here and written explicitly, so h11
only checks and serialises them.

Pipelining, upgrades and ``resume()`` behave as in the fast codec.
"""

from __future__ import annotations

from collections import deque

import h11

from plait.sdk import HeaderPairs, Headers, RequestHead, ResponseHead

from .._events import ConnectionTerminated, Event, RequestReceived, StreamReset, TunnelData
from ..http1.rules import (
    SEND_SPECIAL,
    check_target,
    comma_tokens,
    interpret_head,
    reason_ok,
    reason_phrase,
)
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
    W_NOBODY,
    W_RAW,
    RefBase,
    fields_of,
)
from .strict import ChunkChecker, parse_request_head

__all__ = ["H1ServerCodec"]

_Req = tuple[int, bool, bool, bool, int]  # (stream_id, is_head, http11, close, upgrade_kind)
_NONE, _UPGRADE, _CONNECT = 0, 1, 2
_NO_REQUEST: _Req = (0, False, True, True, _NONE)


class H1ServerCodec(RefBase):
    """Sans-I/O HTTP/1.1 server side on h11 (the strict reference)."""

    def __init__(self, *, max_header_bytes: int = 60 * 1024) -> None:
        super().__init__(max_header_bytes)
        self._next_sid = 1
        self._pending: deque[_Req] = deque()
        self._rclose = self._rupgrade = False
        self._upgraded = False
        self._wclose = False
        self._spent = False  # no request after the one answered last can be read
        self._upgrade_value = b""

    # -- receive side -------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the client; ``b""`` means the client closed (EOF)."""
        if not data:
            return self._eof()
        if self._state == TUNNEL:
            return [TunnelData(data)]
        if self._state == HELD:
            if self._upgraded:
                return [*self.resume(), TunnelData(data)]
            self._held += data
            return []
        if self._state in (CLOSED, FAILED):
            return []
        return self._receive(data)

    def resume(self) -> list[Event]:
        """Events for bytes held back after an Upgrade/CONNECT request (see the fast codec)."""
        if self._state == HELD and self._upgraded:
            self._state = TUNNEL
            held = bytes(self._held)
            self._held.clear()
            return [TunnelData(held)] if held else []
        if self._state == HEAD and self._held:
            held = bytes(self._held)
            self._held.clear()
            return self._receive(held)
        return []

    @property
    def reusable(self) -> bool:
        """As :attr:`plait.core.codec.http1.server.H1ServerCodec.reusable`."""
        return not (self._wclose or self._spent)

    @property
    def keep_alive(self) -> bool:
        if self._dead or self._wclose:
            return False
        if self._wmode == W_IDLE and self._pending:
            return not self._pending[0][3]
        return True

    @property
    def head_in_progress(self) -> bool:
        return self._state == HEAD and bool(self._buf)

    def _eof(self) -> list[Event]:
        state = self._state
        if state == FAILED:
            return []
        self._dead = True
        self._state = CLOSED
        if state == HEAD and self._buf:
            return [StreamReset(self._next_sid, remote=True)]
        if state == BODY:
            self._spent = True
            return [StreamReset(self._rsid, remote=True)]
        return [ConnectionTerminated()]

    def _fail(self, status: int, message: str) -> None:
        if self._state == BODY:
            self._spent = True  # a broken body: where the next request starts is unknown
        super()._fail(status, message)

    def _on_head(self, head: bytes) -> bool:
        method, target, version, specials = parse_request_head(head)
        http11 = version == b"1.1"
        absolute = check_target(method, target)
        connect = method == b"CONNECT"
        # Our framing rules first (they must win over h11's own 501s), then h11.
        interpret_head(specials, [], http11=http11, request=True, connect=connect)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=BIG)
        conn.receive_data(head)
        request = conn.next_event()
        if type(request) is not h11.Request:
            raise h11.RemoteProtocolError("incomplete request head")
        headers = fields_of(request.headers)
        authority, _, chunked, close, upgrade, expect = interpret_head(
            specials, headers, http11=http11, request=True, connect=connect
        )
        path = request.target
        if absolute is not None:  # the target's authority replaces Host (RFC 9112 §3.2.2)
            authority, path = absolute
        kind = _CONNECT if method == b"CONNECT" else _UPGRADE if upgrade else _NONE
        sid = self._next_sid
        self._next_sid += 1
        self._rsid = sid
        event = RequestReceived(
            sid,
            RequestHead(
                method=request.method.decode("latin-1"),
                path=path.decode("latin-1"),
                authority=authority.decode("latin-1"),
                headers=Headers.from_lowercase_pairs(headers),
                http_version=version.decode(),
            ),
            False,
            b"",
            kind != _NONE,
            expect,
        )
        self._events.append(event)
        self._pending.append((sid, method == b"HEAD", http11, close, kind))
        self._rclose, self._rupgrade = close, kind != _NONE
        self._cur = event
        self._conn = conn
        self._checker = ChunkChecker(self._max, 400) if chunked else None
        self._state = BODY
        return True

    def _after_message(self, trailing: bytes) -> None:
        if self._rupgrade:
            self._state = TUNNEL if self._upgraded else HELD
            if self._upgraded and trailing:
                self._events.append(TunnelData(trailing))
            else:
                self._held += trailing
        elif self._rclose:
            self._state = CLOSED  # RFC 9112 §9.6
        else:
            self._state = HEAD
            self._buf += trailing

    # -- send side ----------------------------------------------------------

    def send_informational(self, head: ResponseHead) -> None:
        """Send a 1xx other than 101; dropped for HTTP/1.0 or with no request waiting."""
        if not 100 <= head.status < 200 or head.status == 101:
            raise ValueError("send_informational takes a 1xx status other than 101")
        if self._wmode != W_IDLE:
            raise RuntimeError("a response is already in progress")
        if not self._pending or not self._pending[0][2]:
            return
        if self._sender is None:
            self._sender = self._synthetic(self._pending[0], eof=False)
        fields = [p for p in head.headers.raw if p[0] not in SEND_SPECIAL]
        reason = _reason(head)
        self._send(
            h11.InformationalResponse, status_code=head.status, headers=fields, reason=reason
        )

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        """Frame a final response (or a 101) to the oldest unanswered request."""
        if self._wmode != W_IDLE:
            raise RuntimeError("a response is already in progress")
        req = self._pending[0] if self._pending else _NO_REQUEST
        _, is_head, http11, close, kind = req
        status = head.status
        if status < 200 and (status != 101 or kind != _UPGRADE):
            raise ValueError("a final response needs status >= 200 (101 only to an Upgrade)")
        reason = _reason(head)  # before anything changes: a refused head writes nothing
        fields: HeaderPairs = []
        length: bytes | None = None
        upgrade: bytes | None = None
        for name, value in head.headers.raw:
            if name not in SEND_SPECIAL:
                fields.append((name, value))
            elif name == b"content-length":
                length = value
            elif name == b"connection" and b"close" in comma_tokens(value):
                close = True
            elif name == b"upgrade":
                upgrade = value
        self._wleft, self._wchunked = None, False
        if status == 101 or (kind == _CONNECT and status < 300):
            mode = W_RAW
            if status == 101:
                fields.append((b"connection", b"upgrade"))
                if upgrade is not None:
                    fields.append((b"upgrade", upgrade))
        elif is_head or status in (204, 304):
            mode = W_NOBODY
            if length is not None and status != 204:
                fields.append((b"content-length", length))
        elif length is not None or end_stream:
            mode = W_H11
            if length is None:
                length = b"%d" % len(body)
            if not length.isdigit():
                raise ValueError("invalid content-length")
            self._wleft = int(length)
            fields.append((b"content-length", length))
        elif http11:
            mode, self._wchunked = W_H11, True
            fields.append((b"transfer-encoding", b"chunked"))
        else:
            mode, close = W_H11, True  # close-delimited for an HTTP/1.0 client
        if mode != W_RAW:
            if close:
                fields.append((b"connection", b"close"))
            elif not http11:
                fields.append((b"connection", b"keep-alive"))
        left = self._wleft
        if left is not None and (len(body) > left or (end_stream and len(body) != left)):
            raise ValueError(f"body does not match content-length {left}")  # nothing written
        if self._sender is None or not http11:
            self._sender = self._synthetic(req, eof=mode == W_H11 and not http11 and close)
        if status == 101:
            self._upgrade_value = upgrade or b""
            self._send(h11.InformationalResponse, status_code=101, headers=fields, reason=reason)
        else:
            self._send(h11.Response, status_code=status, headers=fields, reason=reason)
        self._wclose = close
        self._wmode = mode
        if mode == W_RAW:
            self._upgraded = self._dead = self._spent = True
            self._sender = None
            if self._pending:
                self._pending.popleft()
            if self._state == HELD and not self._held:
                self._state = TUNNEL
        if body or end_stream:
            self._write_body(body, end_stream)

    def _synthetic(self, req: _Req, *, eof: bool) -> h11.Connection:
        """An h11 server connection that has 'received' a request like ``req``."""
        _, is_head, _, _, kind = req
        method = b"HEAD" if is_head else b"CONNECT" if kind == _CONNECT else b"GET"
        target = b"a:1" if kind == _CONNECT else b"/"
        lines = [b"%s %s HTTP/%s" % (method, target, b"1.0" if eof else b"1.1"), b"host: a"]
        if kind == _UPGRADE:
            lines += (b"connection: upgrade", b"upgrade: x")
        sender = h11.Connection(h11.SERVER)
        sender.receive_data(b"\r\n".join(lines) + b"\r\n\r\n")
        sender.next_event()
        sender.next_event()
        return sender

    def _finish_write(self) -> None:
        self._wmode = W_IDLE
        self._sender = None
        if not self._pending:
            return
        sid = self._pending.popleft()[0]
        if sid == self._rsid and self._state == BODY:
            self._dead = self._spent = True  # answered before the request body arrived
        elif self._state == HELD and sid == self._rsid:
            self._state = CLOSED if self._rclose else HEAD
            if self._state == CLOSED:
                self._held.clear()


def _reason(head: ResponseHead) -> bytes:
    """The head's reason phrase, or the standard one; h11 writes a phrase as it is given, so
    one with a CR or LF (response splitting) or another control character is refused here."""
    reason = head.reason.encode("latin-1")
    if not reason:
        return reason_phrase(head.status)
    if not reason_ok(reason):
        raise ValueError("invalid reason phrase")
    return reason
