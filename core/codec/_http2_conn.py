"""The ``h2.H2Connection`` the HTTP/2 codec drives, with two deviations from stock h2.

Theory of operation: stock h2 is stricter than RFC 9113 in two places that
matter to a proxy multiplexing many requests on one connection, and this module
relaxes exactly those, leaving every frame-level and HPACK rule to h2.

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

2. **GOAWAY does not freeze the connection.** Stock h2 moves to ``CLOSED`` when
   it sends or receives GOAWAY and then rejects every later frame, so streams
   below ``last_stream_id`` could never finish (RFC 9113 §6.8 says they may).
   :class:`_GracefulStateMachine` keeps the open state; the codec itself
   refuses new streams after a GOAWAY and stops using the connection after a
   fatal error.

Invariant: these overrides are the only places plait reaches into h2's private
API (``_receive_headers_frame``, ``_receive_data_frame``, ``_transitions``);
``tests/core/codec/test_http2_conn.py`` pins their behaviour so an h2 upgrade
that changes them fails loudly.
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
from h2.exceptions import InvalidBodyLengthError, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import DataFrame, Frame, HeadersFrame

__all__ = ["DEFAULT_WINDOW", "PlaitH2Connection", "make_connection"]

DEFAULT_WINDOW = 65535
"""The initial window of every HTTP/2 connection and stream (RFC 9113 §6.9.2)."""

_HPACK_BOMB_FACTOR = 4
"""Header blocks larger than this many times the advertised limit are a
connection error (``ENHANCE_YOUR_CALM``); between 1x and this they are only
refused per stream, which needs the block decoded in full first."""


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


class PlaitH2Connection(H2Connection):
    """``H2Connection`` that resets the stream, not the connection, on a malformed message."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.state_machine = _GracefulStateMachine()

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[H2Event]]:
        try:
            return super()._receive_headers_frame(frame)
        except ProtocolError as exc:
            if type(exc) is not ProtocolError or exc.__cause__ is not None:
                raise
            return self._reset_malformed(frame.stream_id, exc)

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
) -> PlaitH2Connection:
    """Build a connection whose SETTINGS advertise the given limits (sent by ``initiate``)."""
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
        # The codec builds outbound header lists itself, already lower-case and
        # without connection-specific fields, and marks sensitive fields
        # never-indexed (_http2_headers.py): h2's generator pipeline would
        # only repeat that work per request.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = PlaitH2Connection(config)
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
    conn.decoder.max_header_list_size = max_header_list_size * _HPACK_BOMB_FACTOR
    return conn
