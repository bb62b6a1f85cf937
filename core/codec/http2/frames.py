"""HTTP/2 frames (RFC 9113 §4, §6): the frame record, error codes and serialization.

Theory of operation: every frame type is one :class:`Frame` record, a plain
native class (compiled with mypyc) whose fields are those of its type; the
fields another type does not use keep their zero values. The reader
(``frame_reader.py``) turns bytes into records and validates them; the
functions here turn commands into bytes. Each serializer builds the 9-octet
frame header as one integer (length, type, flags, stream identifier) and
appends the payload, so writing a frame costs one allocation per part.

Serializers trust their arguments (the codec never builds an invalid frame):
they do not check stream identifiers, window increments or sizes, except that
:func:`headers` splits a header block into HEADERS and CONTINUATION frames no
larger than the peer's SETTINGS_MAX_FRAME_SIZE. :func:`serialize` writes any
record, padding included, and exists for tests and differential checks.

A :class:`FrameError` carries the RFC 9113 §7 error code and the stream it
concerns: ``stream_id == 0`` is a connection error (answer GOAWAY), any other a
stream error (answer RST_STREAM on that stream, keep the connection).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "CONTINUATION",
    "DATA",
    "ENHANCE_YOUR_CALM",
    "FLAG_ACK",
    "FLAG_END_HEADERS",
    "FLAG_END_STREAM",
    "FLAG_PADDED",
    "FLAG_PRIORITY",
    "FLOW_CONTROL_ERROR",
    "FRAME_SIZE_ERROR",
    "GOAWAY",
    "HEADERS",
    "HTTP_1_1_REQUIRED",
    "INADEQUATE_SECURITY",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PING",
    "PRIORITY",
    "PROTOCOL_ERROR",
    "PUSH_PROMISE",
    "REFUSED_STREAM",
    "RST_STREAM",
    "SETTINGS",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "WINDOW_UPDATE",
    "Frame",
    "FrameError",
    "data",
    "data_head",
    "goaway",
    "headers",
    "ping",
    "priority",
    "rst_stream",
    "serialize",
    "settings",
    "settings_ack",
    "window_update",
]

# Frame types (§6).
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# Flags.
FLAG_END_STREAM: Final = 0x1
FLAG_ACK: Final = 0x1
FLAG_END_HEADERS: Final = 0x4
FLAG_PADDED: Final = 0x8
FLAG_PRIORITY: Final = 0x20

# Error codes (§7).
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
SETTINGS_TIMEOUT: Final = 0x4
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
CONNECT_ERROR: Final = 0xA
ENHANCE_YOUR_CALM: Final = 0xB
INADEQUATE_SECURITY: Final = 0xC
HTTP_1_1_REQUIRED: Final = 0xD

_STREAM_MASK: Final = 0x7FFFFFFF


class FrameError(Exception):
    """A frame the RFC says to refuse. ``stream_id == 0``: a connection error."""

    def __init__(self, code: int, message: str, stream_id: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.stream_id = stream_id
        self.reason = reason  # for the abuse counters: "" or a ``limits.py`` reason

    @property
    def connection_error(self) -> bool:
        return self.stream_id == 0


class Frame:
    """One frame. ``length`` is the payload length on the wire (for DATA, the
    flow-controlled length, padding included); ``data`` is the payload proper
    (DATA, a header block fragment, PING's opaque octets, GOAWAY's debug data,
    an unknown type's payload). PRIORITY fields are those of a PRIORITY frame
    or of a HEADERS frame with the PRIORITY flag; ``weight`` is the octet as
    sent (the RFC's weight minus one)."""

    def __init__(self, type_: int, flags: int, stream_id: int, data: bytes = b"") -> None:
        self.type = type_
        self.flags = flags
        self.stream_id = stream_id
        self.data = data
        self.length = 0
        self.pad_length = 0
        self.error_code = 0
        self.last_stream_id = 0
        self.increment = 0
        self.promised_stream_id = 0
        self.depends_on = 0
        self.weight = 0
        self.exclusive = False
        self.settings: list[tuple[int, int]] = []

    def __repr__(self) -> str:
        return (
            f"Frame(type={self.type}, flags={self.flags:#x}, stream_id={self.stream_id}, "
            f"length={self.length})"
        )


def _head(length: int, type_: int, flags: int, stream_id: int) -> bytes:
    return ((length << 48) | (type_ << 40) | (flags << 32) | stream_id).to_bytes(9, "big")


def data(stream_id: int, payload: bytes, end_stream: bool) -> bytes:
    """One DATA frame (the caller keeps ``payload`` within the peer's frame size)."""
    return _head(len(payload), DATA, FLAG_END_STREAM if end_stream else 0, stream_id) + payload


def data_head(stream_id: int, length: int, end_stream: bool) -> bytes:
    """The 9-octet header of a DATA frame whose ``length`` octets the caller writes after it."""
    return _head(length, DATA, FLAG_END_STREAM if end_stream else 0, stream_id)


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int) -> bytes:
    """A header block as HEADERS and as many CONTINUATION frames as it needs."""
    flags = FLAG_END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame_size:
        return _head(n, HEADERS, flags | FLAG_END_HEADERS, stream_id) + block
    parts = [_head(max_frame_size, HEADERS, flags, stream_id), block[:max_frame_size]]
    pos = max_frame_size
    while pos < n:
        chunk = block[pos : pos + max_frame_size]
        pos += len(chunk)
        parts.append(
            _head(len(chunk), CONTINUATION, FLAG_END_HEADERS if pos >= n else 0, stream_id)
        )
        parts.append(chunk)
    return b"".join(parts)


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return _head(4, RST_STREAM, 0, stream_id) + error_code.to_bytes(4, "big")


def settings(values: list[tuple[int, int]]) -> bytes:
    payload = b"".join([code.to_bytes(2, "big") + v.to_bytes(4, "big") for code, v in values])
    return _head(len(payload), SETTINGS, 0, 0) + payload


def settings_ack() -> bytes:
    return _head(0, SETTINGS, FLAG_ACK, 0)


def ping(opaque: bytes, ack: bool) -> bytes:
    return _head(8, PING, FLAG_ACK if ack else 0, 0) + opaque


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    body = last_stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big") + debug
    return _head(len(body), GOAWAY, 0, 0) + body


def window_update(stream_id: int, increment: int) -> bytes:
    return _head(4, WINDOW_UPDATE, 0, stream_id) + increment.to_bytes(4, "big")


def priority(stream_id: int, depends_on: int, weight: int, exclusive: bool) -> bytes:
    dep = (depends_on & _STREAM_MASK) | (0x80000000 if exclusive else 0)
    return _head(5, PRIORITY, 0, stream_id) + dep.to_bytes(4, "big") + bytes([weight])


def _priority_fields(f: Frame) -> bytes:
    dep = (f.depends_on & _STREAM_MASK) | (0x80000000 if f.exclusive else 0)
    return dep.to_bytes(4, "big") + bytes([f.weight])


def serialize(f: Frame) -> bytes:
    """Any frame record as bytes, padding (``FLAG_PADDED``/``pad_length``) included."""
    t = f.type
    if t in (DATA, HEADERS, PUSH_PROMISE):
        body = f.data
        if t == HEADERS and f.flags & FLAG_PRIORITY:
            body = _priority_fields(f) + body
        elif t == PUSH_PROMISE:
            body = (f.promised_stream_id & _STREAM_MASK).to_bytes(4, "big") + body
        if f.flags & FLAG_PADDED:
            body = bytes([f.pad_length]) + body + bytes(f.pad_length)
    elif t == PRIORITY:
        body = _priority_fields(f)
    elif t == RST_STREAM:
        body = f.error_code.to_bytes(4, "big")
    elif t == SETTINGS:
        body = b"".join([c.to_bytes(2, "big") + v.to_bytes(4, "big") for c, v in f.settings])
    elif t == GOAWAY:
        body = (f.last_stream_id & _STREAM_MASK).to_bytes(4, "big")
        body += f.error_code.to_bytes(4, "big") + f.data
    elif t == WINDOW_UPDATE:
        body = (f.increment & _STREAM_MASK).to_bytes(4, "big")
    else:  # PING, CONTINUATION, unknown types
        body = f.data
    return _head(len(body), t, f.flags, f.stream_id) + body
