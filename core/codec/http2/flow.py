"""Stream records and send-side flow control shared by the HTTP/2 codec's halves.

Theory of operation: the codec keeps one :class:`StreamRecord` per stream the
caller knows. Outbound DATA goes to h2 as far as the stream and connection
windows allow (RFC 9113 §5.2) and the rest waits in the record's queue, with
trailers or END_STREAM behind it. :meth:`CodecCore._flush` runs after
WINDOW_UPDATE or SETTINGS frames and moves queued data round-robin, one frame
per stream per pass, so one stream cannot take the whole connection window.

A record is closed when both sides have ended, and forgotten once every byte
delivered to the caller has been acknowledged (its credit is owed to the peer
until then), or at once when the stream is reset, whose unacknowledged credit
:meth:`CodecCore._drop` returns to the connection window itself.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from typing import Any

from h2.exceptions import StreamClosedError

from .._events import Event, FlowControlUpdated
from .headers import Fields

__all__ = ["CodecCore", "StreamRecord"]


class StreamRecord:
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


class CodecCore:
    """State shared by the send and receive halves of :class:`~plait.core.codec.H2Codec`."""

    def __init__(self, conn: Any, *, client_side: bool) -> None:
        # h2's connection (conn.py) or plait's (native/): the same interface, no common base
        self._conn: Any = conn
        self._client_side = client_side
        self._streams: dict[int, StreamRecord] = {}
        self._blocked: dict[int, None] = {}  # streams with queued data, in arrival order
        self._open = 0  # known streams not yet closed
        self._window_moved = False
        self._goaway_received = False
        self._goaway_last: int | None = None  # last_stream_id of the GOAWAY we sent
        self._terminated = False

    # -- sending DATA --------------------------------------------------------------

    def _send_now(self, stream_id: int, st: StreamRecord, data: bytes, end: bool) -> None:
        """Send what the windows allow, in frames of at most the peer's size; queue the rest."""
        conn = self._conn
        n = len(data)
        if not n:  # END_STREAM alone is not flow-controlled, even on a negative window
            if end:
                conn.send_data(stream_id, b"", end_stream=True)
                self._local_done(stream_id, st)
            return
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

    def _send_queued(self, stream_id: int, st: StreamRecord) -> bool:
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

    # -- stream lifetime -------------------------------------------------------------

    def _local_done(self, stream_id: int, st: StreamRecord) -> None:
        st.end_sent = True
        if st.remote_done:
            self._closed(stream_id, st)

    def _remote_done(self, stream_id: int, st: StreamRecord) -> None:
        st.remote_done = True
        if st.end_sent:
            self._closed(stream_id, st)

    def _closed(self, stream_id: int, st: StreamRecord) -> None:
        st.closed = True
        self._open -= 1
        self._conn.forget_stream(stream_id)
        if not st.unacked:
            del self._streams[stream_id]

    def _drop(self, stream_id: int, st: StreamRecord) -> None:
        """Forget a reset stream, returning the credit of its unacknowledged bytes."""
        del self._streams[stream_id]
        self._blocked.pop(stream_id, None)
        if not st.closed:
            self._open -= 1
        if st.unacked:
            # The stream is closed in h2 now, so this only opens the connection window.
            self._conn.acknowledge_received_data(st.unacked, stream_id)
        self._conn.forget_stream(stream_id)

    def _send_reset(self, stream_id: int, error_code: int) -> None:
        with suppress(StreamClosedError):  # closed both ways already: nothing to tell the peer
            self._conn.reset_stream(stream_id, error_code)
        self._conn.forget_stream(stream_id)

    def _terminate(self) -> None:
        self._terminated = True
        self._streams.clear()
        self._blocked.clear()
        self._open = 0
