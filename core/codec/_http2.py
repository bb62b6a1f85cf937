"""HTTP/2 codec: a sans-I/O wrapper over ``h2`` that speaks plait's event set.

Theory of operation
-------------------
The connection layer owns the socket; :class:`H2Codec` owns one
``h2.H2Connection`` (``_http2_conn.py``) and the per-stream bookkeeping h2 does
not do: the send queue and the receive-credit account. Bytes go in through
:meth:`H2Codec.receive_data`, which returns plait events (``_events.py``);
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
  refused before that (malformed, over the header-size limit, above our GOAWAY)
  is handled on the wire and never surfaces.
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
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from h2 import events as h2e
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes

from plait.sdk import Headers, RequestHead, ResponseHead

from ._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlUpdated,
    InformationalReceived,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from ._http2_conn import DEFAULT_WINDOW, make_connection
from ._http2_headers import (
    Fields,
    header_list_size,
    request_fields,
    request_head,
    response_fields,
    response_head,
    trailer_fields,
)

__all__ = ["H2_PREFACE", "H2Codec", "is_h2_preface"]

logger = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

# RFC 9113 §7 error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x2, 0x7, 0x8
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


class _Stream:
    """The codec's record of one stream the caller knows."""

    __slots__ = (
        "closed",
        "end_queued",
        "end_sent",
        "queue",
        "queued",
        "remote_done",
        "trailers",
        "unacked",
    )

    def __init__(self, *, remote_done: bool = False, end_sent: bool = False) -> None:
        self.queue: deque[memoryview] = deque()
        self.queued = 0  # bytes in ``queue``
        self.end_queued = end_sent  # the caller ended its side (END_STREAM or trailers)
        self.end_sent = end_sent  # END_STREAM is on the wire
        self.trailers: Fields | None = None  # waiting behind ``queue``
        self.remote_done = remote_done
        self.unacked = 0  # bytes delivered to the caller and not yet acknowledged
        self.closed = False  # both sides ended; kept only until ``unacked`` is 0


class H2Codec:
    """One HTTP/2 connection, client or server side. See the module docstring.

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
    """

    def __init__(
        self,
        *,
        client_side: bool,
        max_concurrent_streams: int = 1000,
        initial_window_size: int = 1 << 20,
        max_header_list_size: int = 60 * 1024,
        connection_window_size: int = 4 << 20,
    ) -> None:
        self._client_side = client_side
        self._conn = make_connection(
            client_side=client_side,
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            max_header_list_size=max_header_list_size,
        )
        self._initial_window = initial_window_size
        self._connection_window = max(connection_window_size, initial_window_size)
        self._max_header_list_size = max_header_list_size
        self._streams: dict[int, _Stream] = {}
        self._blocked: dict[int, None] = {}  # streams with queued data, in arrival order
        self._open = 0  # known streams not yet closed
        self._window_moved = False
        self._goaway_received = False
        self._goaway_last: int | None = None  # last_stream_id of the GOAWAY we sent
        self._terminated = False
        self._dispatch: dict[type[h2e.Event], Callable[[Any, list[Event]], None]] = {
            h2e.DataReceived: self._on_data,
            h2e.RequestReceived: self._on_request,
            h2e.ResponseReceived: self._on_response,
            h2e.TrailersReceived: self._on_trailers,
            h2e.InformationalResponseReceived: self._on_informational,
            h2e.WindowUpdated: self._on_window,
            h2e.RemoteSettingsChanged: self._on_window,
            h2e.StreamReset: self._on_reset,
            h2e.ConnectionTerminated: self._on_goaway,
        }

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
        return self._conn.data_to_send()

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

    def _terminate(self) -> None:
        self._terminated = True
        self._streams.clear()
        self._blocked.clear()
        self._open = 0

    # -- sending -----------------------------------------------------------------

    def send_request(self, head: RequestHead, *, end_stream: bool) -> int:
        """Open a stream with ``head``; returns its id. Check :attr:`can_open_stream` first.

        Raises:
            RuntimeError: the connection cannot open another stream now.
        """
        if not self.can_open_stream:
            raise RuntimeError("HTTP/2 connection cannot open another stream")
        conn = self._conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, request_fields(head), end_stream=end_stream)
        self._streams[stream_id] = _Stream(end_sent=end_stream)
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
        with suppress(StreamClosedError):  # closed both ways already: nothing to tell the peer
            self._conn.reset_stream(stream_id, error_code)
        self._drop(stream_id, st)

    def _check_open(self, stream_id: int, st: _Stream) -> None:
        if st.end_queued:
            raise RuntimeError(f"HTTP/2 stream {stream_id}: already ended by the local side")

    def _send_now(self, stream_id: int, st: _Stream, data: bytes, end: bool) -> None:
        conn = self._conn
        n = len(data)
        room = conn.local_flow_control_window(stream_id)
        frame = conn.max_outbound_frame_size
        if n <= room and n <= frame:  # the common case: one frame
            conn.send_data(stream_id, data, end_stream=end)
            if end:
                self._local_done(stream_id, st)
            return
        view = memoryview(data)
        limit = min(n, room)
        off = 0
        while off < limit:
            step = min(frame, limit - off)
            conn.send_data(stream_id, view[off : off + step], end_stream=end and off + step == n)
            off += step
        if off == n:
            if end:
                self._local_done(stream_id, st)
            return
        st.queue.append(view[off:])
        st.queued = n - off
        self._blocked[stream_id] = None

    def _flush(self, out: list[Event]) -> None:
        """Send queued DATA round-robin, one frame per stream per pass, while windows allow."""
        self._window_moved = False
        moved: dict[int, None] = {}
        progress = True
        while progress and self._blocked:
            progress = False
            for stream_id in list(self._blocked):
                if self._send_queued(stream_id, self._streams[stream_id]):
                    progress = True
                    moved[stream_id] = None
        out.extend(FlowControlUpdated(stream_id) for stream_id in moved)

    def _send_queued(self, stream_id: int, st: _Stream) -> bool:
        """Send at most one frame from the queue of ``stream_id``; whether anything moved."""
        conn = self._conn
        room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if room <= 0:
            return False
        chunk = st.queue[0]
        if len(chunk) > room:
            st.queue[0] = chunk[room:]
            chunk = chunk[:room]
        else:
            st.queue.popleft()
        st.queued -= len(chunk)
        if st.queued:
            conn.send_data(stream_id, chunk)
            return True
        del self._blocked[stream_id]
        end = st.end_queued and st.trailers is None
        conn.send_data(stream_id, chunk, end_stream=end)
        if st.trailers is not None:
            conn.send_headers(stream_id, st.trailers, end_stream=True)
            st.trailers = None
            end = True
        if end:
            self._local_done(stream_id, st)
        return True

    # -- stream lifetime ---------------------------------------------------------

    def _local_done(self, stream_id: int, st: _Stream) -> None:
        st.end_sent = True
        if st.remote_done:
            self._closed(stream_id, st)

    def _remote_done(self, stream_id: int, st: _Stream) -> None:
        st.remote_done = True
        if st.end_sent:
            self._closed(stream_id, st)

    def _closed(self, stream_id: int, st: _Stream) -> None:
        st.closed = True
        self._open -= 1
        if not st.unacked:
            del self._streams[stream_id]

    def _drop(self, stream_id: int, st: _Stream) -> None:
        """Forget a reset stream, returning the credit of its unacknowledged bytes."""
        del self._streams[stream_id]
        self._blocked.pop(stream_id, None)
        if not st.closed:
            self._open -= 1
        if st.unacked:
            # The stream is closed in h2 now, so this only opens the connection window.
            self._conn.acknowledge_received_data(st.unacked, stream_id)

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

    # -- receiving ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the transport (``b""`` at EOF); never raises on bad input."""
        if self._terminated:
            return []
        if not data:
            return self._lost(self._terminate_streams([], INTERNAL_ERROR, remote=True))
        try:
            h2_events = self._conn.receive_data(data)
        except ProtocolError as exc:  # h2 has queued GOAWAY with exc.error_code
            logger.debug("HTTP/2 connection error from peer: %s", exc)
            return self._fail([], int(exc.error_code), goaway_queued=True)
        except Exception:  # h2 must not take the connection task down with it
            logger.warning("HTTP/2 codec: h2 raised on peer input", exc_info=True)
            return self._fail([], PROTOCOL_ERROR, goaway_queued=False)
        out: list[Event] = []
        try:
            dispatch = self._dispatch
            for ev in h2_events:
                handler = dispatch.get(type(ev))
                if handler is not None:
                    handler(ev, out)
            if self._window_moved:
                self._flush(out)
        except Exception:
            logger.exception("HTTP/2 codec: failed to process events")
            return self._fail(out, INTERNAL_ERROR, goaway_queued=False)
        return out

    def _fail(self, out: list[Event], code: int, *, goaway_queued: bool) -> list[Event]:
        if not goaway_queued:
            try:
                self._conn.close_connection(code)
            except Exception:  # the GOAWAY is a courtesy; the caller closes anyway
                logger.debug("HTTP/2 codec: could not queue GOAWAY", exc_info=True)
        self._terminate_streams(out, code, remote=False)
        out.append(ConnectionTerminated(error_code=code))
        return out

    def _lost(self, out: list[Event]) -> list[Event]:
        out.append(ConnectionTerminated())
        return out

    def _terminate_streams(self, out: list[Event], code: int, *, remote: bool) -> list[Event]:
        out.extend(
            StreamReset(stream_id, code, remote)
            for stream_id, st in self._streams.items()
            if not st.closed
        )
        self._terminate()
        return out

    def _on_request(self, ev: h2e.RequestReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        fields = cast(Fields, ev.headers)
        end = ev.stream_ended is not None
        if self._goaway_last is not None and stream_id > self._goaway_last:
            self._conn.reset_stream(stream_id, REFUSED_STREAM)  # RFC 9113 §6.8
            return
        if header_list_size(fields) > self._max_header_list_size:
            self._refuse_431(stream_id, end)
            return
        self._streams[stream_id] = _Stream(remote_done=end)
        self._open += 1
        out.append(RequestReceived(stream_id, request_head(fields), end))

    def _refuse_431(self, stream_id: int, request_ended: bool) -> None:
        """Answer 431 (RFC 6585 §5) and, if the request is still coming, stop it (RFC 9113 §8.1)."""
        logger.debug("HTTP/2 stream %d: request header list too large, answered 431", stream_id)
        self._conn.send_headers(stream_id, [(b":status", b"431")], end_stream=True)
        if not request_ended:
            self._conn.reset_stream(stream_id, NO_ERROR)

    def _on_response(self, ev: h2e.ResponseReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        st = self._streams.get(stream_id)
        if st is None or st.closed:
            return
        fields = cast(Fields, ev.headers)
        if header_list_size(fields) > self._max_header_list_size:
            logger.debug("HTTP/2 stream %d: response header list too large", stream_id)
            self._conn.reset_stream(stream_id, PROTOCOL_ERROR)
            self._drop(stream_id, st)
            out.append(StreamReset(stream_id, PROTOCOL_ERROR, remote=False))
            return
        end = ev.stream_ended is not None
        out.append(ResponseReceived(stream_id, response_head(fields), end))
        if end:
            self._remote_done(stream_id, st)

    def _on_informational(self, ev: h2e.InformationalResponseReceived, out: list[Event]) -> None:
        if ev.stream_id in self._streams:
            out.append(InformationalReceived(ev.stream_id, response_head(cast(Fields, ev.headers))))

    def _on_trailers(self, ev: h2e.TrailersReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        st = self._streams.get(stream_id)
        if st is None or st.closed:
            return
        trailers = Headers.from_lowercase_pairs(cast(Fields, ev.headers))
        out.append(TrailersReceived(stream_id, trailers))
        self._remote_done(stream_id, st)

    def _on_data(self, ev: h2e.DataReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        data = ev.data
        st = self._streams.get(stream_id)
        if st is None or st.closed:  # a stream refused before the caller saw it
            if ev.flow_controlled_length:
                self._conn.acknowledge_received_data(ev.flow_controlled_length, stream_id)
            return
        if ev.flow_controlled_length != len(data):  # padding: the caller never sees it
            self._conn.acknowledge_received_data(ev.flow_controlled_length - len(data), stream_id)
        end = ev.stream_ended is not None
        if data or end:
            st.unacked += len(data)
            out.append(DataReceived(stream_id, data, end))
            if end:
                self._remote_done(stream_id, st)

    def _on_window(self, ev: object, out: list[Event]) -> None:
        """WINDOW_UPDATE or SETTINGS (window or frame size may have changed): flush later."""
        self._window_moved = True

    def _on_reset(self, ev: h2e.StreamReset, out: list[Event]) -> None:
        stream_id = ev.stream_id
        st = self._streams.get(stream_id)
        if st is None:
            return
        was_open = not st.closed
        self._drop(stream_id, st)
        if was_open:
            out.append(StreamReset(stream_id, int(ev.error_code), ev.remote_reset))

    def _on_goaway(self, ev: h2e.ConnectionTerminated, out: list[Event]) -> None:
        """GOAWAY (RFC 9113 §6.8): streams we opened above ``last_stream_id`` were not
        processed and are safe to retry (REFUSED_STREAM); with an error code every
        stream is lost."""
        code = int(ev.error_code or 0)
        last = ev.last_stream_id
        self._goaway_received = True
        outbound = 1 if self._client_side else 0
        for stream_id, st in list(self._streams.items()):
            if st.closed:
                continue
            if code:
                self._drop(stream_id, st)
                out.append(StreamReset(stream_id, code, remote=True))
            elif last is not None and stream_id > last and stream_id % 2 == outbound:
                self._drop(stream_id, st)
                out.append(StreamReset(stream_id, REFUSED_STREAM, remote=True))
        out.append(ConnectionTerminated(error_code=code, last_stream_id=last))
