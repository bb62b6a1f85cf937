"""Fast HTTP/1.1 server codec (downstream side): parses requests, frames responses.

Theory of operation: :class:`~.base.H1Base` cuts the input into head
and body segments for llhttp; this module turns a completed request head into
a :class:`RequestReceived` (after the checks llhttp does not make, listed
below) and frames responses.

Pipelining: every complete request in the input is parsed at once and its
events are returned in order; the caller answers them in order. Parsing stops
after a request that closes the connection (RFC 9112 §9.6) and is held after
an Upgrade or CONNECT request until the response decides between tunnel and
HTTP (call :meth:`H1ServerCodec.resume` after sending that response).

Checks added to llhttp's (which rejects bad tokens, bad field values,
obs-fold, whitespace before the colon, bare CR/LF, CL+TE, repeated or listed
Content-Length, bad chunk sizes and extensions, unknown methods): the exact
request-line shape (single SP, RFC 9112 §3); HTTP/1.0 and 1.1 only (505);
Host presence and uniqueness (§3.2); the target form per method (§3.2);
Transfer-Encoding rules (§6.1, §6.3); 431 over ``max_header_bytes``.

Invariants: a response answers ``_pending[0]``, the oldest unanswered request;
a request's stream id is its 1-based position on the connection.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from httptools import HttpRequestParser

from plait.sdk import Headers, RequestHead, ResponseHead

from .._events import ConnectionTerminated, Event, RequestReceived, StreamReset, TunnelData
from .base import (
    R_CHUNKED,
    R_CLOSED,
    R_DOOMED,
    R_FAILED,
    R_HEAD,
    R_HELD,
    R_LENGTH,
    R_TUNNEL,
    W_CHUNKED,
    W_EOF,
    W_IDLE,
    W_LENGTH,
    W_NOBODY,
    W_RAW,
    H1Base,
    check_lines,
)
from .rules import (
    HTTP_METHODS,
    SEND_SPECIAL,
    STATUS_LINES,
    ProtocolError,
    add_field,
    check_host,
    check_target,
    comma_tokens,
    interpret_head,
    length_value,
    simple_framing,
    status_line,
    unknown_method_status,
)

__all__ = ["H1ServerCodec"]

_METHOD_STR: Final = {m: m.decode() for m in HTTP_METHODS}
# Per-request facts the response needs: (stream_id, is_head, http11, close, upgrade_kind)
_Req = tuple[int, bool, bool, bool, int]
_NO_UPGRADE: Final = 0
_UPGRADE: Final = 1
_CONNECT: Final = 2
_NO_REQUEST: Final[_Req] = (0, False, True, True, _NO_UPGRADE)  # an error reply before any request


class H1ServerCodec(H1Base):
    """Sans-I/O HTTP/1.1 server side on llhttp (httptools). See the module docstring."""

    __slots__ = (
        "_host_ok",
        "_host_str",
        "_next_sid",
        "_pending",
        "_rclose",
        "_rupgrade",
        "_spent",
        "_upgraded",
        "_wclose",
    )

    def __init__(self, *, max_header_bytes: int = 60 * 1024) -> None:
        super().__init__(HttpRequestParser, max_header_bytes)
        self._next_sid = 1
        self._pending: deque[_Req] = deque()
        self._host_ok = b"\0"  # the last Host value that passed check_host
        self._host_str = ""
        self._rclose = False  # the request being read closes the connection
        self._rupgrade = False  # ... or asks to upgrade
        self._upgraded = False  # a 101 / CONNECT 2xx was sent: the connection is a tunnel
        self._wclose = False  # the response being sent closes the connection
        self._spent = False  # no request after the one answered last can be read

    # -- receive side -------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the client; ``b""`` means the client closed (EOF).

        Returns the events in order. Malformed input yields one
        ``ProtocolFailed`` (after the events of any earlier good requests),
        after which all input is ignored.
        """
        if not data:
            return self._eof()
        if self._rstate == R_DOOMED:
            return self._doomed_data(data)
        if self._rstate >= R_HELD:
            if self._rstate == R_TUNNEL:
                return [TunnelData(data)]
            if self._rstate == R_HELD:
                if self._upgraded:
                    return [*self.resume(), TunnelData(data)]
                self._held.append(data)
            return []
        return self._receive(data)

    def resume(self) -> list[Event]:
        """Events for bytes held back after an Upgrade/CONNECT request.

        Call after sending the response to such a request: after a 101 (2xx
        for CONNECT) the held bytes come out as ``TunnelData``; after any
        other response they are parsed as the next request(s).
        """
        if self._rstate == R_HELD and self._upgraded:
            self._rstate = R_TUNNEL
            held = b"".join(self._held)
            self._held.clear()
            return [TunnelData(held)] if held else []
        if self._rstate == R_HEAD and self._held:
            return self._receive(b"")
        return []

    @property
    def reusable(self) -> bool:
        """Does the connection go on after the response sent last? Requests queued behind
        it are then served: one that asks to close (:attr:`keep_alive` already answers for
        that one: whether another may follow *it*), and those parsed before an EOF or a
        malformed request, whose event comes after theirs and ends the connection. Not
        after a response that closes, an upgrade, or a request whose body did not arrive
        whole (its rest would be read as the next request)."""
        return not (self._wclose or self._spent)

    @property
    def keep_alive(self) -> bool:
        """May the connection carry another request after the current (or last) response?"""
        if self._dead or self._wclose:
            return False
        if self._wmode == W_IDLE and self._pending:
            return not self._pending[0][3]
        return True

    @property
    def head_in_progress(self) -> bool:
        """Some bytes of a request head have arrived, but not all of it."""
        return self._rstate in (R_HEAD, R_DOOMED) and self._head_bytes > 0

    def _eof(self) -> list[Event]:
        state = self._rstate
        if state == R_FAILED:
            return []
        self._dead = True
        self._rstate = R_CLOSED
        self._held.clear()
        if state in (R_HEAD, R_DOOMED) and self._head_bytes:
            return [StreamReset(self._next_sid, remote=True)]
        if state in (R_LENGTH, R_CHUNKED):
            self._spent = True
            self._sink.body.clear()
            return [StreamReset(self._rsid, remote=True)]
        return [ConnectionTerminated()]

    def _on_head(self, raw: bytes) -> None:
        sink = self._sink
        url, sink.url = sink.url, b""
        headers, sink.headers = sink.headers, []
        specials, sink.specials = sink.specials, []
        method = self._parser.get_method()
        # llhttp skipped leading CR/LF (RFC 9112 §2.2); a method starts with a tchar.
        p = len(raw) - len(raw.lstrip(b"\r\n")) if raw[0] < 33 else 0
        eol = raw.find(b"\r\n", p)
        # RFC 9112 §3: method SP request-target SP HTTP-version, single spaces.
        if eol - p != len(method) + len(url) + 10:
            raise ProtocolError(400, "malformed request line")
        # llhttp accepted "HTTP/" DIGIT "." DIGIT, and only 0.9, 1.0, 1.1 or 2.0.
        if raw[eol - 3] != 0x31:
            raise ProtocolError(505, "HTTP version not supported")
        http11 = raw[eol - 1] == 0x31
        connect = method == b"CONNECT"
        absolute = check_target(method, url) if url[0] != 0x2F or connect else None
        if len(specials) == 1 and specials[0][0] == b"host":  # the usual GET: Host only
            simple: tuple[bytes, int | None, bool] | None = (specials[0][1], None, not http11)
        else:
            simple = None if connect else simple_framing(specials, headers, http11, True)
        if simple is not None:
            host, length, close = simple
            if host != self._host_ok:  # a connection mostly sends one Host: check it once
                check_host(host)
                self._host_ok, self._host_str = host, host.decode("latin-1")
            authority = self._host_str
            chunked = upgrade = expect = False
        else:
            host, length, chunked, close, upgrade, expect = interpret_head(
                specials, headers, http11=http11, request=True, connect=connect
            )
            authority = host.decode("latin-1")
        if absolute is not None:  # the target's authority replaces Host (RFC 9112 §3.2.2)
            authority, url = absolute[0].decode("latin-1"), absolute[1]
        kind = _CONNECT if connect else _UPGRADE if upgrade else _NO_UPGRADE
        sid = self._next_sid
        self._next_sid = sid + 1
        self._rsid = sid
        event = RequestReceived(
            sid,
            RequestHead(
                method=_METHOD_STR.get(method) or method.decode("latin-1"),
                path=url.decode("latin-1"),
                authority=authority,
                headers=Headers.from_lowercase_pairs(headers),
                http_version="1.1" if http11 else "1.0",
            ),
            False,
            b"",
            kind != _NO_UPGRADE,
            expect,
        )
        self._events.append(event)
        self._pending.append((sid, method == b"HEAD", http11, close, kind))
        self._rclose = close
        self._rupgrade = kind != _NO_UPGRADE
        if sink.done:
            sink.done = False
            event.end_stream = True
            if close or kind:
                self._after_message()  # else the next head follows: _rstate stays R_HEAD
        elif chunked:
            self._rstate = R_CHUNKED
            self._cur = event
        elif length:
            self._rstate = R_LENGTH
            self._remaining = length
            self._cur = event
        else:  # llhttp expects a body that our framing rules do not see
            raise ProtocolError(400, "ambiguous message framing")

    def _after_message(self) -> None:
        if self._rupgrade:
            self._rstate = R_TUNNEL if self._upgraded else R_HELD
        elif self._rclose:
            self._rstate = R_CLOSED
        else:
            self._rstate = R_HEAD

    def _fail(self, status: int, message: str) -> None:
        if self._rstate in (R_LENGTH, R_CHUNKED):
            self._spent = True  # a broken body: where the next request starts is unknown
        super()._fail(status, message)

    def _parse_error(self, message: str) -> None:
        if self._rstate != R_HEAD:
            self._fail(400, message)
            return
        raw = (b"".join(self._partial) + self._seg).lstrip(b"\r\n")
        if raw.startswith(b"PRI "):
            self._fail(505, "HTTP/2 connection preface")
        elif "method" in message:
            # 501 or 400 depends on the whole request line: wait for its end
            # so the verdict does not depend on how the input was split.
            self._partial[:] = [raw]
            self._head_bytes = len(raw)
            self._rstate = R_DOOMED
            self._dead = True
            self._doomed_check(message)
        else:
            self._fail(505 if message == "Invalid HTTP version" else 400, message)

    def _doomed_check(self, message: str) -> None:
        raw = self._partial[0]
        lf = raw.find(b"\n")
        cr = raw.find(b"\r")
        if lf >= 0 or 0 <= cr < len(raw) - 1:
            crlf = lf > 0 and cr == lf - 1
            self._fail(unknown_method_status(raw[:cr]) if crlf else 400, message)
        elif len(raw) > self._max:
            self._fail(431, "header section too large")

    def _doomed_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        self._events = events
        self._partial[0] += data
        self._head_bytes += len(data)
        self._doomed_check("invalid method")
        return events

    # -- send side ----------------------------------------------------------

    def send_informational(self, head: ResponseHead) -> None:
        """Send a 1xx other than 101 (e.g. 100 Continue, 103 Early Hints).

        Dropped for an HTTP/1.0 client (RFC 9110 §15.2) or when no request is
        waiting for its response.
        """
        if not 100 <= head.status < 200 or head.status == 101:
            raise ValueError("send_informational takes a 1xx status other than 101")
        if self._wmode != W_IDLE:
            raise RuntimeError("a response is already in progress")
        if not self._pending or not self._pending[0][2]:
            return
        lines = [status_line(head.status, head.reason)]
        for pair in head.headers.raw:
            if pair[0] not in SEND_SPECIAL:
                lines.append(b"%s: %s\r\n" % pair)
        lines.append(b"\r\n")
        block = b"".join(lines)
        check_lines(block, len(lines))
        self._out.append(block)

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        """Frame a final response (or a 101) to the oldest unanswered request.

        Framing: the given ``content-length`` (then exactly that many bytes
        must follow); none for HEAD, 204, 304 and tunnels; ``content-length``
        of ``body`` when ``end_stream``; else chunked for HTTP/1.1 clients and
        close-delimited for HTTP/1.0. With no request to answer (an error
        reply), the connection closes after the response.

        Raises:
            ValueError: bad status, header values with CR/LF, a 101 to a
                request that did not ask to upgrade, or a body that overruns
                the content-length.
            RuntimeError: a response is already in progress.
        """
        if self._wmode != W_IDLE:
            raise RuntimeError("a response is already in progress")
        status = head.status
        req = self._pending[0] if self._pending else _NO_REQUEST
        _, is_head, http11, close, kind = req
        if status < 200 and (status != 101 or kind != _UPGRADE):
            raise ValueError("a final response needs status >= 200 (101 only to an Upgrade)")
        line = None if head.reason else STATUS_LINES.get(status)
        # The head as parts joined once (status_line validated the reason): each field is
        # checked for CR and LF where it goes in, and nothing is %-formatted.
        parts = [line or status_line(status, head.reason)]
        length: bytes | None = None
        upgrade: bytes | None = None
        for name, value in head.headers.raw:
            if name in SEND_SPECIAL:
                if name == b"content-length":
                    length = value
                elif name == b"connection":
                    close = close or b"close" in comma_tokens(value)
                elif name == b"upgrade":
                    upgrade = value
                continue
            add_field(parts, name, value)
        if kind and (status == 101 or (kind == _CONNECT and status < 300)):
            mode = W_RAW  # RFC 9110 §7.8, §9.3.6: no framing, the tunnel follows
            if status == 101:
                parts.append(b"connection: upgrade\r\n")
                if upgrade is not None:
                    add_field(parts, b"upgrade", upgrade)
        elif is_head or status in (204, 304):
            mode = W_NOBODY  # RFC 9110 §8.6: no content-length in a 204
            if length is not None and status != 204:
                if length_value(length) < 0:
                    raise ValueError("invalid content-length")
                parts += (b"content-length: ", length, b"\r\n")
        elif length is not None:
            mode = W_LENGTH
            wleft = length_value(length)
            if wleft < 0:
                raise ValueError("invalid content-length")
            self._wleft = wleft
            parts += (b"content-length: ", length, b"\r\n")
        elif end_stream:
            mode = W_LENGTH
            self._wleft = len(body)
            parts.append(b"content-length: %d\r\n" % len(body))
        elif http11:
            mode = W_CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            mode = W_EOF
            close = True
        if mode != W_RAW:
            if close:
                parts.append(b"connection: close\r\n")
            elif not http11:
                parts.append(b"connection: keep-alive\r\n")  # RFC 9112 Appendix C.2.2
        if mode == W_LENGTH and (
            len(body) > self._wleft or (end_stream and len(body) < self._wleft)
        ):
            raise ValueError(f"body length does not match content-length {self._wleft}")
        parts.append(b"\r\n")
        block = b"".join(parts)
        self._out.append(block)
        self._wclose = close
        self._wmode = mode
        if end_stream and mode == W_LENGTH and self._wleft == len(body):
            if body:  # the common whole-response case, without _write_body
                self._out.append(body)
            self._finish_write()
            return
        if mode == W_RAW:
            self._upgraded = True
            self._dead = self._spent = True
            if self._pending:
                self._pending.popleft()
            if self._rstate == R_HELD and not self._held:
                self._rstate = R_TUNNEL
        if body or end_stream:
            self._write_body(body, end_stream)

    def _finish_write(self) -> None:
        self._wmode = W_IDLE
        if not self._pending:
            return
        sid = self._pending.popleft()[0]
        if sid == self._rsid and self._rstate in (R_LENGTH, R_CHUNKED):
            # Answered before the request body arrived: the rest of it would
            # be read as the next request, so the connection cannot be reused.
            self._dead = self._spent = True
        elif self._rstate == R_HELD and sid == self._rsid:
            # Not a tunnel: the held bytes are the next request (see resume()).
            self._rstate = R_CLOSED if self._rclose else R_HEAD
