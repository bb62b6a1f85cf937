"""The ``h2.H2Connection`` the HTTP/2 codec drives, with its deviations from stock h2.

Theory of operation: stock h2 is stricter or costlier than RFC 9113 requires in
a few places that matter to a proxy multiplexing many requests on one
connection. This module changes exactly those and leaves every other frame,
flow-control and HPACK rule to h2.

1. **Malformed messages are stream errors** (RFC 9113 §8.1.1: "MUST be treated
   as a stream error of type PROTOCOL_ERROR"). Stock h2 turns an invalid
   header block (upper-case name, bad pseudo-header, ``connection`` header,
   trailers without END_STREAM) or a ``content-length`` mismatch into a
   connection error, which would kill every other request on the connection.
   :class:`PlaitH2Connection` catches those errors *after* the header block was
   fully HPACK-decoded (so the shared decoder state stays in sync), resets the
   one stream and reports an ``h2.events.StreamReset(remote_reset=False)``.
   Errors whose ``__cause__`` is set (HPACK decoding, stream-state violations)
   and every ``ProtocolError`` subclass stay connection errors.

2. **A stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused, not fatal**
   (RFC 9113 §5.1.2 allows REFUSED_STREAM, which tells the client it may
   retry). Stock h2 makes it a connection error. The stream is decoded as
   usual, then reset with REFUSED_STREAM, and its events are dropped.

3. **Counting open streams is O(1) below the limits.** Stock h2 counts them by
   scanning every stream on every new stream (about 11 µs at 100 open
   streams, O(n²) per connection). While ``len(streams)``, an upper bound, is
   below the limit being checked, the check cannot fail and the scan is
   skipped; the codec calls :meth:`PlaitH2Connection.forget_stream` when a
   stream closes, doing at once the cleanup h2 would do during its next scan,
   so the bound stays tight.

4. **An oversized frame is refused at its header.** Stock h2 buffers a frame's
   whole body before comparing its length with SETTINGS_MAX_FRAME_SIZE, so a
   peer announcing a 16 MiB frame makes us hold 16 MiB first.
   :class:`_EagerFrameBuffer` fails as soon as the 9-byte header is in.

5. **GOAWAY does not freeze the connection.** Stock h2 moves to ``CLOSED`` when
   it sends or receives GOAWAY and then rejects every later frame, so streams
   below ``last_stream_id`` could never finish (RFC 9113 §6.8 says they may).
   :class:`_GracefulStateMachine` keeps the open state; the codec itself
   refuses new streams after a GOAWAY and stops using the connection after a
   fatal error.

6. **What a peer may make us do is bounded** (``limits.py``): premature
   client resets per interval (rapid reset), control-frame answers the peer
   does not read, and the size of an unterminated header block. Crossing a
   limit raises :class:`~.limits.Abuse` (h2's ``DenialOfServiceError``)
   from inside the frame loop, so h2 queues GOAWAY(ENHANCE_YOUR_CALM) and parses
   nothing more.

7. **HPACK is plait's own** (``plait.core.codec.hpack``, compiled, through
   ``hpack_bridge.py``), and a block it cannot decode is COMPRESSION_ERROR
   (RFC 9113 §4.3), where stock h2 answers PROTOCOL_ERROR.

Invariant: these overrides are the only places plait reaches into h2's private
API (``_receive_headers_frame``, ``_receive_data_frame``,
``_receive_rst_stream_frame``, ``_receive_ping_frame``,
``_receive_settings_frame``, ``_open_streams``, ``_closed_streams``,
``H2ConnectionStateMachine._transitions``, ``FrameBuffer._data``,
``FrameBuffer._update_header_buffer``); ``tests/core/codec/http2/test_frames.py``
pins their behaviour, so an h2 upgrade that changes them fails loudly there.
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import (
    ConnectionInputs,
    ConnectionState,
    H2Connection,
    H2ConnectionStateMachine,
)
from h2.errors import ErrorCodes
from h2.events import Event as H2Event
from h2.events import StreamReset as H2StreamReset
from h2.exceptions import (
    FrameTooLargeError,
    InvalidBodyLengthError,
    ProtocolError,
)
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from .hpack_bridge import CompressionError, Encoder, H2Decoder
from .limits import HEADER_BLOCK_FACTOR, MAX_UNREAD_ANSWERS, Abuse, Clock, ResetBudget

__all__ = [
    "CANCEL",
    "DEFAULT_WINDOW",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "PlaitH2Connection",
    "make_connection",
]

# RFC 9113 §7 error codes the codec uses.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x2, 0x7, 0x8

DEFAULT_WINDOW = 65535
"""The initial window of every HTTP/2 connection and stream (RFC 9113 §6.9.2)."""


class _GracefulStateMachine(H2ConnectionStateMachine):
    """h2's connection state machine, except that GOAWAY keeps the connection open."""

    _transitions = {
        **H2ConnectionStateMachine._transitions,
        **{
            (state, goaway): (None, state)
            for state in (
                ConnectionState.IDLE,
                ConnectionState.CLIENT_OPEN,
                ConnectionState.SERVER_OPEN,
            )
            for goaway in (ConnectionInputs.SEND_GOAWAY, ConnectionInputs.RECV_GOAWAY)
        },
    }


class _EagerFrameBuffer(FrameBuffer):
    """h2's frame buffer, checking the frame length before buffering the body (RFC 9113 §4.2),
    and the size of a header block before buffering another CONTINUATION of it."""

    def __init__(self, *, server: bool, max_header_block: int) -> None:
        super().__init__(server=server)
        self.max_header_block = max_header_block
        self._block = 0  # bytes of the unterminated header block buffered so far

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= 9 and int.from_bytes(data[:3], "big") > self.max_frame_size:
            raise FrameTooLargeError(f"frame of {int.from_bytes(data[:3], 'big')} bytes")
        return super().__next__()

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        if isinstance(f, HeadersFrame | ContinuationFrame) and "END_HEADERS" not in f.flags:
            self._block += len(f.data)
            if self._block > self.max_header_block:
                raise Abuse("header_block", f"header block over {self.max_header_block} bytes")
        else:
            self._block = 0
        return super()._update_header_buffer(f)


class PlaitH2Connection(H2Connection):
    """``H2Connection`` with the deviations listed in the module docstring."""

    def __init__(
        self, config: H2Configuration, *, max_header_block: int, clock: Clock | None = None
    ) -> None:
        super().__init__(config)
        self.encoder = Encoder()  # type: ignore[assignment]  # hpack's API (hpack_bridge.py)
        self.decoder = H2Decoder()  # type: ignore[assignment]
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE
        self.state_machine = _GracefulStateMachine()
        self.incoming_buffer = _EagerFrameBuffer(
            server=not config.client_side, max_header_block=max_header_block
        )
        self._outbound_parity = int(config.client_side)  # clients open odd stream ids
        self._refusing = False
        self.resets = ResetBudget() if clock is None else ResetBudget(clock=clock)
        self.unread_answers = 0  # control-frame answers produced since output last drained

    def output_drained(self) -> None:
        """The transport took everything written so far: the peer is reading."""
        self.unread_answers = 0

    def _answer(self, frame: PingFrame | SettingsFrame) -> None:
        if "ACK" not in frame.flags:
            self.unread_answers += 1
            if self.unread_answers > MAX_UNREAD_ANSWERS:
                raise Abuse("control_flood", "too many control frames while not reading")

    def _receive_ping_frame(self, frame: PingFrame) -> tuple[list[Frame], list[H2Event]]:
        self._answer(frame)
        return super()._receive_ping_frame(frame)

    def _receive_settings_frame(self, frame: SettingsFrame) -> tuple[list[Frame], list[H2Event]]:
        self._answer(frame)
        return super()._receive_settings_frame(frame)

    def _receive_rst_stream_frame(self, frame: RstStreamFrame) -> tuple[list[Frame], list[H2Event]]:
        stream = self.streams.get(frame.stream_id)
        if (
            stream is not None
            and not stream.closed
            and frame.stream_id % 2 != self._outbound_parity
            and not stream.state_machine.headers_sent
            and self.resets.reset()
        ):
            raise Abuse("rapid_reset", "too many streams reset by the client (rapid reset)")
        return super()._receive_rst_stream_frame(frame)

    def forget_stream(self, stream_id: int) -> None:
        """Move a closed stream out of ``streams`` now, as h2 would on its next count."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def _open_streams(self, remainder: int) -> int:
        if self._refusing:
            return 0
        n = len(self.streams)  # open or not, either parity: an upper bound
        outbound = remainder == self._outbound_parity
        limit = (self.remote_settings if outbound else self.local_settings).max_concurrent_streams
        if n < limit:  # h2 only compares the count with this limit: it cannot fail
            return n
        return super()._open_streams(remainder)

    def _over_limit(self, stream_id: int) -> bool:
        """Whether HEADERS on ``stream_id`` would open one inbound stream too many."""
        return (
            stream_id > self.highest_inbound_stream_id
            and stream_id % 2 != self._outbound_parity
            and self.open_inbound_streams >= self.local_settings.max_concurrent_streams
        )

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[H2Event]]:
        if (
            frame.stream_id > self.highest_inbound_stream_id
            and frame.stream_id % 2 != self._outbound_parity
        ):
            self.resets.opened()
        refuse = self._over_limit(frame.stream_id)
        self._refusing = refuse
        try:
            frames, events = super()._receive_headers_frame(frame)
        except ProtocolError as exc:
            if CompressionError.caused(exc):
                raise CompressionError(str(exc)) from exc.__cause__
            if type(exc) is not ProtocolError or exc.__cause__ is not None:
                raise
            return self._reset_malformed(frame.stream_id, exc)
        finally:
            self._refusing = False
        if refuse:
            self.reset_stream(frame.stream_id, ErrorCodes.REFUSED_STREAM)
            self.forget_stream(frame.stream_id)
            return frames, []
        return frames, events

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[H2Event]]:
        try:
            return super()._receive_data_frame(frame)
        except InvalidBodyLengthError as exc:
            result = self._reset_malformed(frame.stream_id, exc)
            # h2 consumed the frame from the connection window before raising;
            # nobody will see these bytes, so hand the credit back now.
            self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return result

    def _reset_malformed(
        self, stream_id: int, exc: ProtocolError
    ) -> tuple[list[Frame], list[H2Event]]:
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed:
            raise exc
        self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        self.forget_stream(stream_id)
        event = H2StreamReset(
            stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
        )
        return [], [event]


def make_connection(
    *,
    client_side: bool,
    max_concurrent_streams: int,
    initial_window_size: int,
    max_header_list_size: int,
    clock: Clock | None = None,
) -> PlaitH2Connection:
    """Build a connection whose SETTINGS advertise the given limits (sent by ``initiate``)."""
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
        # The codec builds outbound header lists itself, already lower-case and
        # without connection-specific fields, and marks sensitive fields
        # never-indexed (headers.py): h2's generator pipeline would
        # only repeat that work per request.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    bound = max_header_list_size * HEADER_BLOCK_FACTOR
    conn = PlaitH2Connection(config, max_header_block=bound, clock=clock)
    values: dict[SettingCodes, int] = {
        SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
        SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
    }
    if client_side:
        values[SettingCodes.ENABLE_PUSH] = 0
    if initial_window_size >= DEFAULT_WINDOW:
        # Larger than the default: safe to apply before the peer acknowledges.
        # A smaller window must wait for the ACK (the codec sends it as a
        # separate SETTINGS update), or data the peer legitimately sent under
        # the default window would be a flow-control error.
        values[SettingCodes.INITIAL_WINDOW_SIZE] = initial_window_size
    conn.local_settings = Settings(client=client_side, initial_values=values)
    conn.decoder.max_header_list_size = bound
    return conn
