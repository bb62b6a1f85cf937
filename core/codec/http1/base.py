"""The machinery the fast HTTP/1.1 codecs share: segmented feeding of llhttp, body writing.

Theory of operation (receive side): llhttp (through httptools) validates the
syntax and calls back with the URL, each header field, body pieces and the
end of a message, but it cannot tell us *where* in the input a head or a
message ended. So the codec cuts the input itself and feeds llhttp one
segment at a time:

* ``R_HEAD``: up to and including the first CRLF CRLF (RFC 9112 §2.1: the head
  ends at the empty line; llhttp accepts no bare LF, so this is exact). This
  also counts head bytes across reads for the 431 limit, and keeps a copy of a
  head that spans reads so the raw request line can be checked;
* ``R_LENGTH``: exactly the remaining Content-Length bytes;
* ``R_CHUNKED``: up to the next CRLF CRLF, since a chunked message always ends
  with one (last-chunk, trailer section, empty line; RFC 9112 §7.1);
* ``R_EOF_BODY``: everything (a close-delimited response body).

So after every segment the codec knows exactly which message the parser is
in: pipelined requests, held bytes after an Upgrade, and a HEAD response's
missing body need no help from llhttp.

Theory of operation (send side): a subclass writes the head and sets
``_wmode``; :meth:`_write_body` frames data for that mode; ``data_to_send``
drains the output list.

Invariants:
  * ``_events`` is the list returned by the current ``receive_data`` call; a
    head event whose message completes inside the same call is ``_cur`` and is
    completed in place (the one-event fast path);
  * the parser never sees a byte beyond the message being read, except after
    an error, after which the codec is ``R_FAILED`` and ignores all input.
"""

from __future__ import annotations

from typing import Any, Final

from httptools import HttpParserError, HttpParserUpgrade

from plait.sdk import HeaderPairs, Headers

from .._events import DataReceived, Event, ProtocolFailed, TrailersReceived, TunnelData
from .rules import SPECIAL, ProtocolError

__all__ = [
    "R_CHUNKED",
    "R_CLOSED",
    "R_DOOMED",
    "R_EOF_BODY",
    "R_FAILED",
    "R_HEAD",
    "R_HELD",
    "R_LENGTH",
    "R_TUNNEL",
    "W_CHUNKED",
    "W_EOF",
    "W_IDLE",
    "W_LENGTH",
    "W_NOBODY",
    "W_RAW",
    "H1Base",
    "check_lines",
]

# Receive states.
# (Final: the compiled build inlines them instead of reading module globals.)
R_HEAD: Final = 0
R_LENGTH: Final = 1
R_CHUNKED: Final = 2
R_EOF_BODY: Final = 3
R_HELD: Final = 4
R_TUNNEL: Final = 5
R_CLOSED: Final = 6
R_FAILED: Final = 7
R_DOOMED: Final = 8  # server: a bad method was read; waiting for the end of its line (400/501)
# Write modes.
W_IDLE: Final = 0
W_LENGTH: Final = 1
W_CHUNKED: Final = 2
W_EOF: Final = 3
W_NOBODY: Final = 4
W_RAW: Final = 5

_CRLF2: Final = b"\r\n\r\n"

_LOWER: Final[dict[bytes, bytes]] = {name: name for name in SPECIAL}
"""Header names as they came → lower-cased, one object per name. A dict lookup costs less
than ``lower()`` (a method call), and the same object each time makes later set and dict
lookups of the name identity hits. Bounded: past :data:`_LOWER_MAX` names (a peer sending
made-up names) a name is lower-cased and not kept, what was kept stays; a name longer than
:data:`_LOWER_LONGEST` is never kept (at most ~128 KiB in all, whatever peers send)."""
_LOWER_MAX: Final = 1024
_LOWER_LONGEST: Final = 64


class _Sink:
    """llhttp callbacks: collect, never decide (the codec decides between segments)."""

    __slots__ = ("body", "done", "head_done", "headers", "specials", "status", "url")

    def __init__(self) -> None:
        self.url = b""
        self.status = b""
        self.headers: HeaderPairs = []
        self.specials: HeaderPairs = []
        self.body: list[bytes] = []
        self.head_done = False
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = _LOWER.get(name)
        if lower is None:
            lower = name.lower()
            if len(_LOWER) < _LOWER_MAX and len(name) <= _LOWER_LONGEST:
                lower = _LOWER.setdefault(lower, lower)
                _LOWER[name] = lower
        # llhttp strips leading OWS but keeps trailing OWS (RFC 9112 §5).
        n = len(value)
        stripped = value
        if n and (value[n - 1] == 32 or value[n - 1] == 9):  # SP, HTAB
            stripped = value.rstrip(b" \t")
        if lower in SPECIAL:
            if lower == b"transfer-encoding" and b"\t" in value[len(stripped) :]:
                # llhttp does not see "chunked" before an HTAB and would read a
                # response body to EOF instead: refuse the ambiguity.
                raise ProtocolError(400, "HTAB after Transfer-Encoding")
            self.specials.append((lower, stripped))
        else:
            self.headers.append((lower, stripped))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class H1Base:
    """Receive loop and body writer shared by the fast server and client codecs."""

    __slots__ = (
        "_carry",
        "_cur",
        "_dead",
        "_events",
        "_feed",
        "_head_bytes",
        "_held",
        "_max",
        "_out",
        "_parser",
        "_parser_cls",
        "_partial",
        "_remaining",
        "_rsid",
        "_rstate",
        "_seg",
        "_since_body",
        "_sink",
        "_wleft",
        "_wmode",
    )
    _BAD = 400  # status_hint for a malformed message from the peer
    _TOO_LARGE = 431

    def __init__(self, parser_cls: Any, max_header_bytes: int) -> None:
        self._sink = _Sink()
        self._parser_cls = parser_cls
        self._parser = parser_cls(self._sink)
        self._feed = self._parser.feed_data
        self._max = max_header_bytes
        self._rstate = R_HEAD
        self._head_bytes = 0
        self._partial: list[bytes] = []
        self._seg = b""
        self._carry = b""
        self._remaining = 0
        self._since_body = 0
        self._rsid = 0  # stream id of the message being read
        self._cur: Any = None  # its head event, while inside the receive_data call that made it
        self._events: list[Event] = []
        self._held: list[bytes] = []
        self._dead = False  # the connection cannot carry another message
        self._out: list[bytes] = []
        self._wmode = W_IDLE
        self._wleft = 0

    # -- receive side -------------------------------------------------------

    def _receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        self._events = events
        if self._held and self._rstate == R_HEAD:
            data = b"".join(self._held) + data
            self._held.clear()
        try:
            pos, n = 0, len(data)
            if n and self._rstate == R_HEAD:  # the common first step, outside the loop
                pos = self._read_head(data, 0, n)
                if pos < n and self._rstate == R_LENGTH and self._remaining == n - pos:
                    pos = self._whole_body(data, pos, n)
            while pos < n:
                if self._rstate == R_HEAD:  # the common case, kept out of _consume's chain
                    pos = self._read_head(data, pos, n)
                else:
                    pos = self._consume(data, pos, n)
        except ProtocolError as exc:
            self._fail(exc.status, exc.message)
        except HttpParserError as err:  # (one name per except type: mypyc types it once)
            cause = err.__context__
            if isinstance(cause, ProtocolError):  # raised by a _Sink callback
                self._fail(cause.status if self._BAD == 400 else self._BAD, cause.message)
            else:
                self._parse_error(str(err))
        if self._sink.body and self._rstate < R_HELD:
            self._flush_body()
        self._cur = None
        return events

    def _whole_body(self, data: bytes, pos: int, n: int) -> int:
        """A Content-Length body that is all of ``data[pos:]``, after its head.

        What _consume + _end_message do, minus their bookkeeping: llhttp
        agrees on the length (it rejects any Content-Length we would not
        accept), so the body is exactly these bytes and on_body's copies
        are dropped; the head event is completed in place.
        """
        body = data[pos:]
        self._feed_body(body)
        sink = self._sink
        sink.body.clear()
        sink.done = False
        self._remaining = 0
        cur = self._cur
        cur.end_stream = True
        cur.body = body
        self._cur = None
        self._after_message()
        return n

    def _consume(self, data: bytes, pos: int, n: int) -> int:
        """Consume input in any state but R_HEAD; return the new position."""
        state = self._rstate
        if state == R_LENGTH:
            take = self._remaining
            if take >= n - pos:
                take = n - pos
                seg = data[pos:] if pos else data
            else:
                seg = data[pos : pos + take]
            self._remaining -= take
            self._feed_body(seg)
            if not self._remaining:
                self._end_message()
            return pos + take
        if state == R_CHUNKED:
            return self._read_chunked(data, pos, n)
        if state == R_EOF_BODY:
            self._feed_body(data[pos:] if pos else data)
        elif state == R_HELD:
            self._held.append(data[pos:])
        elif state == R_TUNNEL:
            self._events.append(TunnelData(data[pos:] if pos else data))
        # R_CLOSED, R_FAILED: RFC 9112 §9.6, nothing after "close" is processed.
        return n

    def _find_end(self, data: bytes, pos: int) -> int:
        """Index just past the next CRLF CRLF at or after ``pos``, or -1."""
        carry = self._carry
        if carry:
            i = (carry + data[pos : pos + 3]).find(_CRLF2)
            if i >= 0:
                return pos + i + 4 - len(carry)
        i = data.find(_CRLF2, pos)
        return i + 4 if i >= 0 else -1

    def _keep_carry(self, seg: bytes) -> None:
        self._carry = seg[-3:] if len(seg) >= 3 else (self._carry + seg)[-3:]

    def _read_head(self, data: bytes, pos: int, n: int) -> int:
        if self._carry:
            end = self._find_end(data, pos)
        else:
            end = data.find(_CRLF2, pos)
            if end >= 0:
                end += 4
        room = self._max - self._head_bytes
        if end < 0:
            if n - pos > room:
                raise ProtocolError(self._TOO_LARGE, "header section too large")
            seg = data[pos:] if pos else data
            self._seg = seg
            self._feed_body(seg)
            if self._sink.head_done:  # llhttp ended a head without CRLF CRLF: HTTP/0.9
                raise ProtocolError(self._BAD, "malformed start line")
            self._partial.append(seg)
            self._head_bytes += n - pos
            self._keep_carry(seg)
            return n
        if end - pos > room:
            raise ProtocolError(self._TOO_LARGE, "header section too large")
        seg = data[pos:end] if pos or end != n else data
        self._seg = seg
        try:  # noqa: SIM105 (inlined _feed_body: this is the hot path)
            self._feed(seg)
        except HttpParserUpgrade:
            pass
        if not self._sink.head_done:  # only empty lines so far (RFC 9112 §2.2)
            self._partial.append(seg)
            self._head_bytes += end - pos
            self._carry = b""
            return end
        self._sink.head_done = False
        if self._partial:
            seg = b"".join(self._partial) + seg
            self._partial.clear()
        self._head_bytes = 0
        self._carry = b""
        self._on_head(seg)
        return end

    def _feed_body(self, seg: bytes) -> None:
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager per feed)
            self._feed(seg)
        except HttpParserUpgrade:
            pass  # llhttp paused after an Upgrade/CONNECT head; we track that ourselves

    def _read_chunked(self, data: bytes, pos: int, n: int) -> int:
        end = self._find_end(data, pos)
        stop = n if end < 0 else end
        seg = data[pos:stop] if pos or stop != n else data
        sink = self._sink
        had_body = len(sink.body)
        self._feed_body(seg)
        if sink.done:
            self._carry = b""
            self._since_body = 0
            self._end_message()
            return stop
        self._keep_carry(seg)
        # Bound what llhttp buffers for us between body bytes (chunk lines, trailers).
        self._since_body = 0 if len(sink.body) > had_body else self._since_body + len(seg)
        if self._since_body > self._max:
            raise ProtocolError(self._BAD, "chunk framing or trailer section too large")
        return stop

    def _end_message(self) -> None:
        sink = self._sink
        sink.done = False
        sink.specials.clear()  # framing fields in trailers are dropped (RFC 9110 §6.5.1)
        body = sink.body
        trailers = sink.headers
        cur = self._cur
        if cur is not None and not trailers:
            cur.end_stream = True
            if body:
                cur.body = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
        else:
            data = b"".join(body)
            body.clear()
            if trailers:
                sink.headers = []
                if data:
                    self._events.append(DataReceived(self._rsid, data, False))
                self._events.append(
                    TrailersReceived(self._rsid, Headers.from_lowercase_pairs(trailers))
                )
            else:
                self._events.append(DataReceived(self._rsid, data, True))
        self._cur = None
        self._after_message()

    def _flush_body(self) -> None:
        body = self._sink.body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._events.append(DataReceived(self._rsid, data, False))

    def _fail(self, status: int, message: str) -> None:
        self._rstate = R_FAILED
        self._dead = True
        self._sink.body.clear()
        self._events.append(ProtocolFailed(status, message))

    def _parse_error(self, message: str) -> None:
        """llhttp refused the input (a subclass may defer the verdict)."""
        self._fail(self._BAD, message)

    def _reset_parser(self) -> None:
        """A new llhttp parser, for when the old one expects bytes that will not come."""
        sink = self._sink
        sink.url = sink.status = b""
        sink.headers = []
        sink.specials = []
        sink.body.clear()
        sink.head_done = sink.done = False
        self._parser = self._parser_cls(sink)
        self._feed = self._parser.feed_data

    # Subclass hooks.
    def _on_head(self, raw: bytes) -> None:
        raise NotImplementedError

    def _after_message(self) -> None:
        raise NotImplementedError

    def _finish_write(self) -> None:
        raise NotImplementedError

    # -- send side ----------------------------------------------------------

    def _write_body(self, data: bytes, end_stream: bool) -> None:
        mode = self._wmode
        if mode == W_LENGTH:
            left = self._wleft - len(data)
            if left < 0 or (end_stream and left):
                raise ValueError(
                    f"body length does not match content-length ({self._wleft} bytes left)"
                )
            self._wleft = left
            if data:
                self._out.append(data)
        elif mode == W_CHUNKED:
            if data:  # RFC 9112 §7.1: a zero-size chunk would end the body
                self._out += (b"%x\r\n" % len(data), data, b"\r\n")
            if end_stream:
                self._out.append(b"0\r\n\r\n")
        elif mode in (W_EOF, W_RAW):
            if data:
                self._out.append(data)
        elif mode == W_IDLE:
            raise RuntimeError("no message is being sent")
        # W_NOBODY: HEAD, 204 and 304 responses carry no content (RFC 9110 §6.4.1).
        if end_stream and mode != W_RAW:
            self._finish_write()

    def send_data(self, data: bytes, *, end_stream: bool) -> None:
        """Frame body bytes for the message being sent (raw bytes in a tunnel).

        Raises:
            ValueError: more or fewer bytes than the declared content-length.
            RuntimeError: no message is being sent.
        """
        self._write_body(data, end_stream)

    def send_trailers(self, trailers: Headers) -> None:
        """End the message with trailers; they are dropped unless the body is chunked."""
        if self._wmode == W_CHUNKED:
            lines = [b"0\r\n"]
            for pair in trailers.raw:
                if pair[0] not in SPECIAL:
                    lines.append(b"%s: %s\r\n" % pair)
            lines.append(b"\r\n")
            block = b"".join(lines)
            check_lines(block, len(lines))
            self._out.append(block)
            self._finish_write()
        else:
            self._write_body(b"", True)

    def data_to_send(self) -> bytes:
        """Everything framed since the last call."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data


def check_lines(block: bytes, lines: int) -> None:
    """Refuse a head whose fields smuggled in a CR or LF (response splitting)."""
    if block.count(b"\n") != lines or block.count(b"\r") != lines:
        raise ValueError("CR or LF in a header name or value")
