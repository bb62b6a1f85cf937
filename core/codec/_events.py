"""Version-independent HTTP events: what the codecs emit and consume.

Theory of operation: a codec is sans-I/O. The connection layer feeds it the
bytes it read (``receive_data(data) -> list[Event]``), asks it to frame what
must be sent (``send_*`` methods), and writes whatever ``data_to_send()``
returns. The codec never touches a socket, a clock or a task, so HTTP/1.1 and
HTTP/2 look the same above it and every parser rule is testable with bytes in,
events out.

Server-side codecs emit ``RequestReceived``, ``DataReceived``,
``TrailersReceived``, ``StreamReset``, ``TunnelData`` and
``ProtocolFailed``; client-side codecs emit ``ResponseReceived``,
``InformationalReceived``, ``DataReceived``, ``TrailersReceived``,
``StreamReset``, ``TunnelData`` and ``ConnectionTerminated``.
Every message ends with exactly one of: an event with ``end_stream=True``,
a ``TrailersReceived``, or a ``StreamReset``.

The per-request events (``RequestReceived``, ``ResponseReceived``,
``DataReceived``) define ``__init__`` themselves (the dataclass keeps it): the
generated one would run interpreted even in the compiled build.
"""

from __future__ import annotations

from dataclasses import dataclass

from plait.sdk import Headers, RequestHead, ResponseHead

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "FlowControlUpdated",
    "InformationalReceived",
    "ProtocolFailed",
    "RequestReceived",
    "ResponseReceived",
    "StreamReset",
    "TrailersReceived",
    "TunnelData",
]


@dataclass(slots=True)
class RequestReceived:
    """A request head. ``end_stream`` is true when no body follows.

    For HTTP/1.1 ``stream_id`` counts requests on the connection from 1.
    ``body`` optionally carries the *whole* body when it arrived in the same
    read as the head (the HTTP/1.1 fast path); then ``end_stream`` is true and
    no ``DataReceived`` follows.
    """

    stream_id: int
    head: RequestHead
    end_stream: bool
    body: bytes = b""
    upgrade: bool = False
    """HTTP/1.1 ``Upgrade`` (e.g. WebSocket) or ``CONNECT``: after a 101/2xx the
    connection becomes an opaque tunnel and further bytes arrive as ``TunnelData``."""
    expect_continue: bool = False
    """The client sent ``Expect: 100-continue`` (RFC 9110 §10.1.1)."""

    def __init__(
        self,
        stream_id: int,
        head: RequestHead,
        end_stream: bool,
        body: bytes = b"",
        upgrade: bool = False,
        expect_continue: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.head = head
        self.end_stream = end_stream
        self.body = body
        self.upgrade = upgrade
        self.expect_continue = expect_continue


@dataclass(slots=True)
class ResponseReceived:
    """A final (>= 200, or 101) response head.

    Codecs emit the head alone (``body`` empty, or the whole body with
    ``end_stream`` on the HTTP/1.1 fast path). A driver that gathered a whole
    small response from its queued events hands it on as one event: ``body`` the
    whole body, ``end_stream`` true, and ``trailers`` when the message ended
    with them.
    """

    stream_id: int
    head: ResponseHead
    end_stream: bool
    body: bytes = b""
    trailers: Headers | None = None

    def __init__(
        self,
        stream_id: int,
        head: ResponseHead,
        end_stream: bool,
        body: bytes = b"",
        trailers: Headers | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.head = head
        self.end_stream = end_stream
        self.body = body
        self.trailers = trailers


@dataclass(slots=True)
class InformationalReceived:
    """A 1xx response other than 101 (e.g. ``100 Continue``, ``103 Early Hints``)."""

    stream_id: int
    head: ResponseHead


@dataclass(slots=True)
class DataReceived:
    stream_id: int
    data: bytes
    end_stream: bool

    def __init__(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream


@dataclass(slots=True)
class TrailersReceived:
    """Trailers; the message ends with them."""

    stream_id: int
    trailers: Headers


@dataclass(slots=True)
class StreamReset:
    """The peer reset the stream (HTTP/2 RST_STREAM), or the connection died mid-message."""

    stream_id: int
    error_code: int = 0
    remote: bool = True


@dataclass(slots=True)
class TunnelData:
    """Opaque bytes after an accepted ``Upgrade``/``CONNECT``."""

    data: bytes


@dataclass(slots=True)
class ProtocolFailed:
    """The peer broke the protocol. The server answers ``status_hint`` and closes.

    ``status_hint`` is 400 (malformed, smuggling attempt), 431 (headers too
    large), 413 (body too large) or 505 (version not supported).
    """

    status_hint: int
    message: str


@dataclass(slots=True)
class ConnectionTerminated:
    """HTTP/2 GOAWAY, or the peer closed an HTTP/1.1 connection between messages."""

    error_code: int = 0
    last_stream_id: int | None = None


@dataclass(slots=True)
class FlowControlUpdated:
    """HTTP/2 windows opened; queued DATA may now be flushed with ``data_to_send()``."""

    stream_id: int  # 0: the connection window


Event = (
    RequestReceived
    | ResponseReceived
    | InformationalReceived
    | DataReceived
    | TrailersReceived
    | StreamReset
    | TunnelData
    | ProtocolFailed
    | ConnectionTerminated
    | FlowControlUpdated
)
