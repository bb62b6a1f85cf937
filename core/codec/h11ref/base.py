"""What the h11 reference codecs share: head cutting, event assembly, body writing.

Theory of operation: h11 keeps one request/response cycle per
``h11.Connection`` and will not parse request N+1 before response N is sent,
so the reference codec uses a *fresh* ``h11.Connection`` per message it reads
(and, on the server, per response it writes). It cuts each head out of the
input itself (so it can count head bytes for 431 and apply the strict raw
checks of ``strict``), hands the head and the bytes after it to that
message's h11 connection, turns h11's events into plait events, and takes
``trailing_data`` back when the message ends.

Invariants: the events of one ``receive_data`` call follow the same fast-path
shape as the fast codec (one head event carrying the whole body when the
message completes inside the call); ``_conn`` is the h11 connection of the
message being read, ``None`` between messages.
"""

from __future__ import annotations

from typing import Any

import h11

from plait.sdk import HeaderPairs, Headers

from .._events import DataReceived, Event, ProtocolFailed, TrailersReceived, TunnelData
from ..http1.rules import SPECIAL, ProtocolError
from .strict import ChunkChecker, check_partial_head, head_end

__all__ = [
    "BIG",
    "BODY",
    "CLOSED",
    "FAILED",
    "HEAD",
    "HELD",
    "TUNNEL",
    "W_H11",
    "W_IDLE",
    "W_NOBODY",
    "W_RAW",
    "RefBase",
    "fields_of",
]

HEAD, BODY, HELD, TUNNEL, CLOSED, FAILED = range(6)
W_IDLE, W_H11, W_NOBODY, W_RAW = range(4)
BIG = 1 << 40  # h11's own incomplete-event limit; the codec enforces its limits itself


def fields_of(headers: Any) -> HeaderPairs:
    """h11's (lower-case name, value) pairs, minus the fields a codec sets aside."""
    return [(bytes(n), bytes(v)) for n, v in headers if n not in SPECIAL]


class RefBase:
    _BAD = 400
    _TOO_LARGE = 431

    def __init__(self, max_header_bytes: int) -> None:
        self._max = max_header_bytes
        self._buf = bytearray()
        self._state = HEAD
        self._conn: Any = None
        self._checker: ChunkChecker | None = None
        self._rsid = 0
        self._events: list[Event] = []
        self._cur: Any = None
        self._body: list[bytes] = []
        self._held = bytearray()
        self._dead = False
        self._out: list[bytes] = []
        self._wmode = W_IDLE
        self._wleft: int | None = None
        self._sender: Any = None  # the h11 connection framing what we send
        self._wchunked = False

    # -- receive side -------------------------------------------------------

    def _receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        self._events = events
        try:
            if self._state == BODY:
                self._body_bytes(data)
            else:
                self._buf += data
            while self._state == HEAD and self._buf and self._one_head():
                pass
        except ProtocolError as exc:
            self._fail(exc.status, exc.message)
        except h11.RemoteProtocolError as exc:
            self._fail(exc.error_status_hint if self._BAD == 400 else self._BAD, str(exc))
        if self._body and self._state == BODY:
            self._events.append(DataReceived(self._rsid, b"".join(self._body), False))
            self._body.clear()
        self._cur = None
        return events

    def _one_head(self) -> bool:
        start, end = head_end(self._buf)
        if end < 0:
            if len(self._buf) > self._max:
                raise ProtocolError(self._TOO_LARGE, "header section too large")
            check_partial_head(bytes(self._buf[start:]), request=self._BAD == 400)
            return False
        if end > self._max:
            raise ProtocolError(self._TOO_LARGE, "header section too large")
        head = bytes(self._buf[start:end])
        rest = bytes(self._buf[end:])
        self._buf.clear()
        if self._on_head(head):
            self._body_bytes(rest)
        elif self._state == TUNNEL:
            if rest:
                self._events.append(TunnelData(rest))
        else:
            self._buf += rest
        return True

    def _body_bytes(self, data: bytes) -> None:
        if self._checker is not None and data:
            self._checker.feed(data)
        if data:
            self._conn.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        conn = self._conn
        while self._state == BODY:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if type(event) is h11.Data:
                self._body.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                trailing = conn.trailing_data[0]
                self._end_message(fields_of(event.headers))
                self._checker = None
                self._after_message(trailing)
                self._conn = None
            else:
                raise ProtocolError(self._BAD, f"unexpected {type(event).__name__}")

    def _end_message(self, trailers: HeaderPairs) -> None:
        cur = self._cur
        data = b"".join(self._body)
        self._body.clear()
        if cur is not None and not trailers:
            cur.end_stream = True
            cur.body = data
        elif trailers:
            if data:
                self._events.append(DataReceived(self._rsid, data, False))
            self._events.append(
                TrailersReceived(self._rsid, Headers.from_lowercase_pairs(trailers))
            )
        else:
            self._events.append(DataReceived(self._rsid, data, True))
        self._cur = None

    def _fail(self, status: int, message: str) -> None:
        self._state = FAILED
        self._dead = True
        self._body.clear()
        self._events.append(ProtocolFailed(status, message))

    def _on_head(self, head: bytes) -> bool:
        """Handle one head; True when a message body follows in ``_conn``."""
        raise NotImplementedError

    def _after_message(self, trailing: bytes) -> None:
        raise NotImplementedError

    def _finish_write(self) -> None:
        raise NotImplementedError

    # -- send side ----------------------------------------------------------

    def _send(self, event_type: Any, **fields: Any) -> None:
        """Build and send an h11 event; h11's LocalProtocolError becomes ValueError."""
        try:
            out = self._sender.send(event_type(**fields))
        except h11.LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        if out:
            self._out.append(out)

    def _write_body(self, data: bytes, end_stream: bool) -> None:
        mode = self._wmode
        if mode == W_IDLE:
            raise RuntimeError("no message is being sent")
        if mode == W_RAW:
            if data:
                self._out.append(data)
            return
        if self._wleft is not None:
            left = self._wleft - len(data)
            if left < 0 or (end_stream and left):
                raise ValueError(f"body length does not match content-length ({self._wleft} left)")
            self._wleft = left
        if data and mode == W_H11:
            self._send(h11.Data, data=data)
        if end_stream:
            self._send(h11.EndOfMessage)
            self._finish_write()

    def send_data(self, data: bytes, *, end_stream: bool) -> None:
        """Frame body bytes for the message being sent (raw bytes in a tunnel)."""
        self._write_body(data, end_stream)

    def send_trailers(self, trailers: Headers) -> None:
        """End the message with trailers; they are dropped unless the body is chunked."""
        if self._wmode == W_H11 and self._wchunked:
            self._send(h11.EndOfMessage, headers=[p for p in trailers.raw if p[0] not in SPECIAL])
            self._finish_write()
        else:
            self._write_body(b"", True)

    def data_to_send(self) -> bytes:
        """Everything framed since the last call."""
        data = b"".join(self._out)
        self._out.clear()
        return data
