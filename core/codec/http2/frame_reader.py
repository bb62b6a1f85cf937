"""Reading HTTP/2 frames from a byte stream, strictly (RFC 9113 §3.4, §4, §6).

Theory of operation: :class:`FrameReader` buffers what :meth:`FrameReader.feed`
is given and :meth:`FrameReader.next_frame` returns one validated
:class:`~.frames.Frame` at a time, ``None`` when the next frame is not complete
yet. Frames of unknown types are skipped (§4.1; §5.5), unknown flags and the
reserved bit kept as received but never acted on.

What needs only the 9-octet header is checked before the body is buffered, so a
peer cannot make us hold more than one frame of SETTINGS_MAX_FRAME_SIZE: the
size limit (§4.2), the stream identifier a type requires (0 or not), the fixed
lengths of PING, RST_STREAM, WINDOW_UPDATE and SETTINGS, that the first frame is
SETTINGS (§3.4), that a header block is continued by CONTINUATION frames of the
same stream and nothing else (§6.10), and that an unterminated header block
stays under ``max_header_block`` (a limit of ``limits.py``: ENHANCE_YOUR_CALM).
Those checks read the reader's state but do not change it; the state moves only
once a frame is whole, so asking again after more bytes arrive repeats them.

The rest is checked on the whole frame: padding (§6.1, §6.2, §6.6), SETTINGS
values (§6.5.2), the promised stream of PUSH_PROMISE (§5.1.1), a zero
WINDOW_UPDATE increment (§6.9), a PRIORITY frame's length and a stream
depending on itself (§5.3.1). Every violation raises
:class:`~.frames.FrameError`. A connection error (``stream_id == 0``) leaves the
reader unusable; after a stream error the frame is consumed and reading may go
on. A HEADERS frame in error is attached to the error (``frame``): its header
block must still reach the HPACK decoder, whose state is shared by the
connection.
"""

from __future__ import annotations

from typing import Final

from .frames import (
    CONTINUATION,
    DATA,
    ENHANCE_YOUR_CALM,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_PADDED,
    FLAG_PRIORITY,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PING,
    PRIORITY,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Frame,
    FrameError,
)

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "PREFACE", "FrameReader", "StreamFrameError"]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_MAX_FRAME_SIZE: Final = 16384
MAX_FRAME_SIZE_LIMIT: Final = (1 << 24) - 1
MAX_WINDOW: Final = (1 << 31) - 1
_MASK: Final = 0x7FFFFFFF

# SETTINGS parameters whose values are constrained (§6.5.2; RFC 8441 §3).
_ENABLE_PUSH: Final = 0x2
_INITIAL_WINDOW_SIZE: Final = 0x4
_MAX_FRAME_SIZE: Final = 0x5
_ENABLE_CONNECT_PROTOCOL: Final = 0x8

_NEEDS_STREAM: Final = frozenset({DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION})
_NEEDS_ZERO: Final = frozenset({SETTINGS, PING, GOAWAY})
_NAMES: Final = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    PRIORITY: "PRIORITY",
    RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION",
}


class StreamFrameError(FrameError):
    """A stream error on a HEADERS frame whose header block must still be decoded."""

    def __init__(self, code: int, message: str, frame: Frame) -> None:
        super().__init__(code, message, frame.stream_id)
        self.frame = frame


class FrameReader:
    """Frames out of a byte stream; see the module docstring.

    Args:
        expect_preface: server side: the client's 24-octet preface comes first.
        max_frame_size: our SETTINGS_MAX_FRAME_SIZE.
        max_header_block: the most octets an unterminated header block may reach.
    """

    def __init__(
        self,
        *,
        expect_preface: bool,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_header_block: int = 1 << 20,
    ) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max_header_block
        self._buf = b""
        self._pos = 0
        self._preface = expect_preface
        self._first = True  # the first frame must be SETTINGS (§3.4)
        self._continuing = 0  # the stream whose header block is unterminated, or 0
        self._block = 0  # octets of that block so far

    def feed(self, data: bytes) -> None:
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        elif self._buf:
            self._buf += data
        else:
            self._buf = data

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as frames."""
        return len(self._buf) - self._pos

    @property
    def awaiting_preface(self) -> bool:
        """The client preface has not been read whole yet (server side)."""
        return self._preface

    @property
    def in_header_block(self) -> bool:
        return self._continuing != 0

    def next_frame(self) -> Frame | None:
        """The next whole frame, or ``None``; raises :class:`FrameError`."""
        buf = self._buf
        pos = self._pos
        if self._preface:
            avail = len(buf) - pos
            if buf[pos : pos + 24] != PREFACE[: min(avail, 24)]:
                raise FrameError(PROTOCOL_ERROR, "invalid HTTP/2 connection preface")
            if avail < 24:
                return None
            pos += 24
            self._pos = pos
            self._preface = False
        while len(buf) - pos >= 9:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            type_ = buf[pos + 3]
            flags = buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & _MASK
            self._check_header(length, type_, flags, sid)
            end = pos + 9 + length
            if len(buf) < end:
                return None
            payload = buf[pos + 9 : end]
            self._pos = pos = end
            self._first = False
            if type_ > CONTINUATION:
                continue  # unknown type: ignored
            return self._parse(type_, flags, sid, length, payload)
        return None

    def _check_header(self, length: int, type_: int, flags: int, sid: int) -> None:
        if length > self.max_frame_size:
            raise FrameError(FRAME_SIZE_ERROR, f"frame of {length} octets over the maximum")
        if self._first and (type_ != SETTINGS or flags & FLAG_ACK):
            raise FrameError(PROTOCOL_ERROR, "the connection preface must start with SETTINGS")
        if self._continuing:
            if type_ != CONTINUATION or sid != self._continuing:
                raise FrameError(PROTOCOL_ERROR, "header block interrupted by another frame")
            if self._block + length > self.max_header_block:
                raise FrameError(
                    ENHANCE_YOUR_CALM,
                    f"header block over {self.max_header_block} octets",
                    reason="header_block",
                )
        elif type_ == CONTINUATION:
            raise FrameError(PROTOCOL_ERROR, "CONTINUATION without a header block to continue")
        if sid == 0:
            if type_ in _NEEDS_STREAM:
                raise FrameError(PROTOCOL_ERROR, f"{_NAMES[type_]} frame on stream 0")
        elif type_ in _NEEDS_ZERO:
            raise FrameError(PROTOCOL_ERROR, f"{_NAMES[type_]} frame on stream {sid}")
        if type_ == PING:
            if length != 8:
                raise FrameError(FRAME_SIZE_ERROR, f"PING frame of {length} octets")
        elif type_ in (RST_STREAM, WINDOW_UPDATE):
            if length != 4:
                raise FrameError(FRAME_SIZE_ERROR, f"{_NAMES[type_]} frame of {length} octets")
        elif type_ == SETTINGS:
            if flags & FLAG_ACK and length:
                raise FrameError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            if length % 6:
                raise FrameError(FRAME_SIZE_ERROR, f"SETTINGS frame of {length} octets")
        elif type_ == GOAWAY and length < 8:
            raise FrameError(FRAME_SIZE_ERROR, f"GOAWAY frame of {length} octets")

    def _parse(self, type_: int, flags: int, sid: int, length: int, payload: bytes) -> Frame:
        f = Frame(type_, flags, sid)
        f.length = length
        if type_ == DATA:
            f.data = _unpad(f, payload, 0) if flags & FLAG_PADDED else payload
        elif type_ in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self._header_block(f, flags, length)
            if type_ == CONTINUATION:
                f.data = payload
                return f
            fixed = 4 if type_ == PUSH_PROMISE else 5 if flags & FLAG_PRIORITY else 0
            body = _unpad(f, payload, fixed) if flags & FLAG_PADDED else payload
            if len(body) < fixed:
                raise FrameError(FRAME_SIZE_ERROR, f"{_NAMES[type_]} frame too short")
            if type_ == PUSH_PROMISE:
                f.promised_stream_id = promised = int.from_bytes(body[:4], "big") & _MASK
                if promised == 0 or promised % 2:
                    raise FrameError(PROTOCOL_ERROR, f"PUSH_PROMISE of stream {promised}")
            else:
                if fixed:
                    _priority_fields(f, body)
                if fixed and f.depends_on == sid:
                    f.data = body[5:]
                    raise StreamFrameError(PROTOCOL_ERROR, f"stream {sid} depends on itself", f)
            f.data = body[fixed:]
        elif type_ == PRIORITY:
            if length != 5:
                raise FrameError(FRAME_SIZE_ERROR, f"PRIORITY frame of {length} octets", sid)
            _priority_fields(f, payload)
            if f.depends_on == sid:
                raise FrameError(PROTOCOL_ERROR, f"stream {sid} depends on itself", sid)
        elif type_ == RST_STREAM:
            f.error_code = int.from_bytes(payload, "big")
        elif type_ == SETTINGS:
            f.settings = _settings(payload)
        elif type_ == PING:
            f.data = payload
        elif type_ == GOAWAY:
            f.last_stream_id = int.from_bytes(payload[:4], "big") & _MASK
            f.error_code = int.from_bytes(payload[4:8], "big")
            f.data = payload[8:]
        else:  # WINDOW_UPDATE
            f.increment = int.from_bytes(payload, "big") & _MASK
            if not f.increment:
                raise FrameError(PROTOCOL_ERROR, "WINDOW_UPDATE with a zero increment", sid)
        return f

    def _header_block(self, f: Frame, flags: int, length: int) -> None:
        """Follow the header block HEADERS, PUSH_PROMISE and CONTINUATION frames carry."""
        if flags & FLAG_END_HEADERS:
            self._continuing = 0
            self._block = 0
        else:
            self._continuing = f.stream_id
            self._block += length


def _unpad(f: Frame, payload: bytes, fixed: int) -> bytes:
    if not payload:
        raise FrameError(FRAME_SIZE_ERROR, f"padded {_NAMES[f.type]} frame without a pad length")
    pad = payload[0]
    if pad > len(payload) - 1 - fixed:
        raise FrameError(PROTOCOL_ERROR, f"{_NAMES[f.type]} padding longer than the payload")
    f.pad_length = pad
    return payload[1 : len(payload) - pad]


def _priority_fields(f: Frame, body: bytes) -> None:
    dep = int.from_bytes(body[:4], "big")
    f.exclusive = bool(dep & 0x80000000)
    f.depends_on = dep & _MASK
    f.weight = body[4]


def _settings(payload: bytes) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in range(0, len(payload), 6):
        code = (payload[i] << 8) | payload[i + 1]
        value = int.from_bytes(payload[i + 2 : i + 6], "big")
        if code in (_ENABLE_PUSH, _ENABLE_CONNECT_PROTOCOL):
            if value > 1:
                raise FrameError(PROTOCOL_ERROR, f"SETTINGS parameter {code} of {value}")
        elif code == _INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                raise FrameError(FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE of {value}")
        elif (
            code == _MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT
        ):
            raise FrameError(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE of {value}")
        out.append((code, value))
    return out
