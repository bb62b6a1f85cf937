"""HTTP/2 codec: a sans-I/O wrapper over ``h2`` that speaks plait's event set.

Theory of operation
-------------------
The connection layer owns the socket; :class:`H2Codec` owns one
``h2.H2Connection`` (``conn.py``) and the per-stream bookkeeping h2 does
not do: the send queue and the receive-credit account. Bytes go in through
:meth:`H2Codec.receive_data`, which returns plait events (``codec/_events.py``);
commands go in through the ``send_*`` methods; everything to write comes out
of :meth:`H2Codec.data_to_send`. Nothing here blocks, sleeps or raises on
input from the peer.

Flow control, send side (RFC 9113 §5.2): :meth:`send_data` writes what the
stream and connection windows allow and queues the rest, trailers and
END_STREAM behind it. When WINDOW_UPDATE or SETTINGS open a window, the queues
are flushed round-robin, one frame per stream per pass so that one stream
cannot take the whole connection window, and a ``FlowControlUpdated(stream_id)``
is emitted for each stream whose queue shrank. The caller applies backpressure
by watching :meth:`pending_bytes`.

Flow control, receive side: credit for a received DATA frame is returned to
the peer only when the caller calls :meth:`acknowledge_received_data`, i.e.
when the bytes have been forwarded, not when they were parsed; so a slow
consumer stalls its producer instead of growing a buffer. h2 decides when the
accumulated acknowledgements are worth a WINDOW_UPDATE. Padding is
acknowledged at once, since the caller never sees it.

Invariants:

* Events are only emitted for streams the caller knows: one it opened with
  :meth:`send_request`, or one announced by ``RequestReceived``. A stream
  refused before that (malformed, over the header-size or concurrency limit,
  above our GOAWAY) is handled on the wire and never surfaces.
* Every known stream ends with exactly one of: an event with
  ``end_stream=True``, ``TrailersReceived``, or ``StreamReset``. A connection
  that dies (EOF, protocol error, GOAWAY with an error code) resets every open
  stream first, then emits ``ConnectionTerminated``.
* Connection-window credit for a stream's bytes is returned exactly once:
  by the caller's acknowledgement while the stream is known, or by the codec
  when the stream is reset (either way), after which acknowledgements for it
  are ignored. A stream's record is forgotten once both sides have ended and
  all its bytes are acknowledged.
* ``send_*`` on a stream that was reset or on a terminated connection is a
  no-op (the caller learns of the reset from an event); sending after the end
  of a stream is a programming error and raises ``RuntimeError``.

Driving it from a connection layer:

1. Plaintext ports: :func:`is_h2_preface` on the first bytes picks HTTP/2 or
   HTTP/1.1 (``None``: read more); feed the same bytes to the chosen codec. With
   TLS, ALPN ``h2`` decides. ``Upgrade: h2c`` is not supported.
2. Call :meth:`H2Codec.initiate`, then write :meth:`H2Codec.data_to_send` after
   every call that may produce output (``receive_data``, ``send_*``,
   ``acknowledge_received_data``, ``reset_stream``, ``close``); once per loop
   iteration is enough. Feed ``b""`` at EOF.
3. Acknowledge DATA when it has been forwarded (or dropped); reset a stream you
   stop reading. Stop reading a stream's source while ``pending_bytes`` is above
   your high-water mark and resume on ``FlowControlUpdated(stream_id)``.
4. ``StreamReset(error_code=REFUSED_STREAM)`` means the peer did not process
   the request: safe to retry elsewhere.
5. After ``ConnectionTerminated`` open no new stream and close the transport
   once :attr:`H2Codec.open_streams` is 0. After an error or EOF that is at
   once (every stream was already reset); after a graceful GOAWAY
   (``error_code=0``) the streams up to ``last_stream_id`` may still finish.
   To drain, call ``close()`` and wait the same way.

Module layout: ``conn.py`` (the h2 connection and where it departs from stock h2),
``headers.py`` (head <-> field list), ``flow.py`` (stream records,
send queue), ``receive.py`` (h2 events -> plait events), and this module
(the public class: connection lifecycle and the ``send_*`` commands).
"""

from __future__ import annotations

from typing import Any

from h2.settings import SettingCodes

from plait.sdk import Headers, RequestHead, ResponseHead

from .conn import CANCEL, DEFAULT_WINDOW, NO_ERROR, make_connection
from .flow import StreamRecord
from .headers import request_fields, response_fields, trailer_fields
from .limits import Clock
from .receive import H2Receiver

__all__ = ["H2_PREFACE", "H2Codec", "is_h2_preface"]

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

_MAX_STREAM_ID = 2**31 - 1


def is_h2_preface(data: bytes) -> bool | None:
    """Whether a plaintext connection that starts with ``data`` speaks HTTP/2.

    Returns ``True`` once the 24-byte preface is complete, ``False`` as soon as
    a byte differs (HTTP/1.1), and ``None`` when ``data`` is a strict prefix of
    the preface and more bytes are needed. Feed the same bytes to the chosen
    codec afterwards; nothing is consumed here.
    """
    n = len(data)
    if n >= 24:
        return data[:24] == H2_PREFACE
    return None if data == H2_PREFACE[:n] else False


class H2Codec(H2Receiver):
    """One HTTP/2 connection, client or server side. See the module docstring.

    :meth:`_new_connection` builds the connection the codec drives: h2's here
    (``conn.py``), plait's own in :class:`~.native.NativeH2Codec`.

    Args:
        client_side: ``True`` for a connection we opened (we send requests).
        max_concurrent_streams: advertised SETTINGS_MAX_CONCURRENT_STREAMS.
        initial_window_size: our receive window per stream.
        max_header_list_size: advertised SETTINGS_MAX_HEADER_LIST_SIZE. A larger
            request gets ``431`` (server side), a larger response resets the
            stream with PROTOCOL_ERROR (client side).
        connection_window_size: our receive window for the whole connection
            (at least ``initial_window_size``); it bounds what the peer may have
            in flight to us, i.e. what the caller may buffer unacknowledged.
        clock: the rapid-reset budget's clock (``limits.py``); monotonic
            seconds, ``time.monotonic`` by default.
    """

    def __init__(
        self,
        *,
        client_side: bool,
        max_concurrent_streams: int = 1000,
        initial_window_size: int = 1 << 20,
        max_header_list_size: int = 60 * 1024,
        connection_window_size: int = 4 << 20,
        clock: Clock | None = None,
    ) -> None:
        conn = self._new_connection(
            client_side=client_side,
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            max_header_list_size=max_header_list_size,
            clock=clock,
        )
        super().__init__(conn, client_side=client_side, max_header_list_size=max_header_list_size)
        self._initial_window = initial_window_size
        self._connection_window = max(connection_window_size, initial_window_size)

    def _new_connection(
        self,
        *,
        client_side: bool,
        max_concurrent_streams: int,
        initial_window_size: int,
        max_header_list_size: int,
        clock: Clock | None,
    ) -> Any:
        return make_connection(
            client_side=client_side,
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            max_header_list_size=max_header_list_size,
            clock=clock,
        )

    # -- connection ------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the preface (client) and our SETTINGS, and open the connection window."""
        conn = self._conn
        conn.initiate_connection()
        if self._initial_window < DEFAULT_WINDOW:
            conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: self._initial_window})
        if self._connection_window > DEFAULT_WINDOW:
            conn.increment_flow_control_window(self._connection_window - DEFAULT_WINDOW)

    def data_to_send(self) -> bytes:
        data: bytes = self._conn.data_to_send()
        return data

    def output_drained(self) -> None:
        """The transport took everything written so far without backing up: the peer
        reads. Call it after writing while the transport is not paused; control-frame
        answers produced while it is not called are capped (``limits.py``)."""
        self._conn.output_drained()

    @property
    def open_streams(self) -> int:
        """Streams the caller knows that have not ended both ways or been reset."""
        return self._open

    @property
    def can_open_stream(self) -> bool:
        """Client side: a new request fits under the peer's limit and nobody sent GOAWAY."""
        conn = self._conn
        return (
            self._client_side
            and not (self._goaway_received or self._terminated or self._goaway_last is not None)
            and self._open < conn.remote_settings.max_concurrent_streams
            and conn.highest_outbound_stream_id < _MAX_STREAM_ID - 2
        )

    def close(self, error_code: int = NO_ERROR, *, last_stream_id: int | None = None) -> None:
        """Send GOAWAY.

        With ``NO_ERROR`` this is a graceful shutdown: open streams (server:
        those up to ``last_stream_id``, default the highest seen) may finish,
        new ones are refused, and the caller closes the transport once
        :attr:`open_streams` is 0. It may be called again with a lower
        ``last_stream_id``; streams above it that the caller already knows are
        the caller's to reset. With an error code the connection is finished:
        every later call is a no-op and the caller should write
        :meth:`data_to_send` and close.
        """
        if self._terminated:
            return
        conn = self._conn
        if error_code != NO_ERROR:
            conn.close_connection(error_code, last_stream_id=last_stream_id)
            self._terminate()
            return
        last = conn.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        conn.close_connection(NO_ERROR, last_stream_id=last)
        self._goaway_last = last if self._goaway_last is None else min(last, self._goaway_last)

    # -- sending -----------------------------------------------------------------

    def send_request(self, head: RequestHead, *, end_stream: bool) -> int:
        """Open a stream with ``head``; returns its id. Check :attr:`can_open_stream` first.

        Raises:
            RuntimeError: the connection cannot open another stream now.
        """
        if not self.can_open_stream:
            raise RuntimeError("HTTP/2 connection cannot open another stream")
        conn = self._conn
        stream_id: int = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, request_fields(head), end_stream=end_stream)
        self._streams[stream_id] = StreamRecord(end_sent=end_stream)
        self._open += 1
        return stream_id

    def send_response(self, stream_id: int, head: ResponseHead, *, end_stream: bool) -> None:
        st = self._streams.get(stream_id)
        if st is None or self._terminated:
            return
        self._check_open(stream_id, st)
        self._conn.send_headers(stream_id, response_fields(head), end_stream=end_stream)
        if end_stream:
            st.end_queued = True
            self._local_done(stream_id, st)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """A 1xx response (not 101, which HTTP/2 forbids: RFC 9113 §8.6)."""
        st = self._streams.get(stream_id)
        if st is not None and not self._terminated:
            self._check_open(stream_id, st)
            self._conn.send_headers(stream_id, response_fields(head))

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Send or queue ``data`` (never blocks). ``data`` must not be mutated afterwards."""
        st = self._streams.get(stream_id)
        if st is None or self._terminated:
            return
        self._check_open(stream_id, st)
        st.end_queued = end_stream
        if st.queued:
            if data:
                st.queue.append(memoryview(data))
                st.queued += len(data)
            return
        self._send_now(stream_id, st, data, end_stream)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """End the stream with trailers, after any queued data."""
        st = self._streams.get(stream_id)
        if st is None or self._terminated:
            return
        self._check_open(stream_id, st)
        st.end_queued = True
        fields = trailer_fields(trailers)
        if st.queued:
            st.trailers = fields
        elif fields:
            self._conn.send_headers(stream_id, fields, end_stream=True)
            self._local_done(stream_id, st)
        else:  # nothing left to send as trailers: a plain END_STREAM
            self._send_now(stream_id, st, b"", True)

    def pending_bytes(self, stream_id: int) -> int:
        """DATA queued for ``stream_id`` that the flow-control windows have not let out yet."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.queued

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """RST_STREAM; no event follows. A no-op for a stream already reset or forgotten."""
        st = self._streams.get(stream_id)
        if st is None or self._terminated:
            return
        self._send_reset(stream_id, error_code)
        self._drop(stream_id, st)

    def _check_open(self, stream_id: int, st: StreamRecord) -> None:
        if st.end_queued:
            raise RuntimeError(f"HTTP/2 stream {stream_id}: already ended by the local side")

    def acknowledge_received_data(self, stream_id: int, nbytes: int) -> None:
        """The caller has consumed ``nbytes`` of DATA from ``stream_id``: return the credit.

        Acknowledging more than was received, or for a stream that was reset,
        is ignored (the codec already returned that credit).
        """
        st = self._streams.get(stream_id)
        if st is None or nbytes <= 0 or self._terminated:
            return
        nbytes = min(nbytes, st.unacked)
        st.unacked -= nbytes
        self._conn.acknowledge_received_data(nbytes, stream_id)
        if st.closed and not st.unacked:
            del self._streams[stream_id]
