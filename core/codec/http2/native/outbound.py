"""plait's own HTTP/2 connection, its sending half and the state both halves share.

Theory of operation: :class:`ConnectionBase` offers the part of ``h2.H2Connection``'s
interface that plait's codec (``codec.py``, ``flow.py``, ``receive.py``) drives, with
the same meaning, so the codec runs unchanged over either connection: commands
(``send_headers``, ``send_data``, ``reset_stream``, ``close_connection``,
``acknowledge_received_data``, ``update_settings``, ...) append frames to an output
list that :meth:`ConnectionBase.data_to_send` joins. Header blocks are encoded with
plait's HPACK encoder and split into CONTINUATION frames at the peer's
SETTINGS_MAX_FRAME_SIZE; DATA consumes the stream and connection send windows (the
codec never sends more than :meth:`local_flow_control_window` allows).

A stream leaves the table as soon as it is closed (both ends, or a reset); how the
last :data:`CLOSED_MEMORY` streams closed is remembered, because it decides what a
late frame on one means (``inbound.py``).

The receiving half is ``inbound.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from h2.exceptions import StreamClosedError

from plait.core.codec.hpack import Decoder, Encoder

from .. import frames
from ..frame_reader import PREFACE, FrameReader
from ..limits import HEADER_BLOCK_FACTOR, Clock, ResetBudget
from .state import DEFAULT_WINDOW, RecvWindow, Settings, Stream

__all__ = ["CLOSED_MEMORY", "ConnectionBase"]

CLOSED_MEMORY = 4096
"""How many closed streams are remembered with how they closed (reset or ended)."""

_INITIAL_WINDOW_SIZE = 0x4


class ConnectionBase:
    """State and the sending half; see the module docstring."""

    def __init__(
        self,
        *,
        client_side: bool,
        max_concurrent_streams: int,
        initial_window_size: int,
        max_header_list_size: int,
        clock: Clock | None = None,
    ) -> None:
        self.client_side = client_side
        bound = max_header_list_size * HEADER_BLOCK_FACTOR
        self.reader = FrameReader(expect_preface=not client_side, max_header_block=bound)
        self.encoder = Encoder()
        self.decoder = Decoder(max_header_list_size=bound)
        self.local_settings = Settings()
        self.local_settings.max_concurrent_streams = max_concurrent_streams
        self.local_settings.max_header_list_size = max_header_list_size
        self._initial: list[tuple[int, int]] = [
            (0x3, max_concurrent_streams),
            (0x6, max_header_list_size),
        ]
        if client_side:
            self.local_settings.enable_push = 0
            self._initial.append((0x2, 0))
        if initial_window_size >= DEFAULT_WINDOW:  # see conn.make_connection
            self.local_settings.initial_window_size = initial_window_size
            self._initial.append((_INITIAL_WINDOW_SIZE, initial_window_size))
        self._unacked_settings: list[list[tuple[int, int]]] = []
        self.remote_settings = Settings()
        self.send_window = DEFAULT_WINDOW  # the connection's
        self.recv = RecvWindow(DEFAULT_WINDOW)
        self.streams: dict[int, Stream] = {}
        self.closed_by_reset: dict[int, bool] = {}  # closed stream -> closed by RST_STREAM
        self._closed_order: deque[int] = deque()  # the same streams, oldest first
        self.open_inbound = 0
        self.highest_inbound_stream_id = 0
        self.highest_outbound_stream_id = 0
        self._parity = 1 if client_side else 0  # the parity of the ids we open
        self.resets = ResetBudget() if clock is None else ResetBudget(clock=clock)
        self.unread_answers = 0
        self.out: list[Any] = []  # bytes, and the buffers send_data was given
        self._block_frame: frames.Frame | None = None  # HEADERS of an unterminated block
        self._block: list[bytes] = []
        self._block_error = 0

    @property
    def max_outbound_frame_size(self) -> int:
        return self.remote_settings.max_frame_size

    # -- connection ------------------------------------------------------------------

    def initiate_connection(self) -> None:
        if self.client_side:
            self.out.append(PREFACE)
        self.out.append(frames.settings(self._initial))
        self._unacked_settings.append([])  # applied already: nothing to do on its ACK

    def update_settings(self, values: dict[int, int]) -> None:
        pairs = [(int(code), value) for code, value in values.items()]
        self.out.append(frames.settings(pairs))
        self._unacked_settings.append(pairs)

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        if stream_id:
            st = self.streams.get(stream_id)
            if st is None:
                return
            st.recv.grow(increment)
        else:
            self.recv.grow(increment)
        self.out.append(frames.window_update(stream_id or 0, increment))

    def close_connection(
        self,
        error_code: int = 0,
        additional_data: bytes | None = None,
        last_stream_id: int | None = None,
    ) -> None:
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        self.out.append(frames.goaway(last, int(error_code), additional_data or b""))

    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = b"".join(out)
        self.out = []
        return data

    def output_drained(self) -> None:
        self.unread_answers = 0

    def get_next_available_stream_id(self) -> int:
        highest = self.highest_outbound_stream_id
        return highest + 2 if highest else (1 if self.client_side else 2)

    # -- streams -----------------------------------------------------------------------

    def local_flow_control_window(self, stream_id: int) -> int:
        st = self.streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        return min(st.send_window, self.send_window)

    def send_headers(
        self, stream_id: int, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        st = self.streams.get(stream_id)
        if st is None:
            if stream_id % 2 != self._parity or stream_id <= self.highest_outbound_stream_id:
                raise StreamClosedError(stream_id)
            st = Stream(
                stream_id,
                self.remote_settings.initial_window_size,
                self.local_settings.initial_window_size,
                inbound=False,
            )
            self.streams[stream_id] = st
            self.highest_outbound_stream_id = stream_id
            fields = list(headers)
            st.head_request = bool(fields) and fields[0] == (b":method", b"HEAD")
            headers = fields
        elif st.local_closed:
            raise StreamClosedError(stream_id)
        st.headers_sent = True
        block = self.encoder.encode(headers)
        self.out.append(frames.headers(stream_id, block, end_stream, self.max_outbound_frame_size))
        if end_stream:
            self._end_local(st)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        st = self.streams.get(stream_id)
        if st is None or st.local_closed:
            raise StreamClosedError(stream_id)
        n = len(data)
        st.send_window -= n
        self.send_window -= n
        self.out.append(frames.data_head(stream_id, n, end_stream))
        if n:
            self.out.append(data)  # b"".join takes any buffer
        if end_stream:
            self._end_local(st)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        st = self.streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        self.out.append(frames.rst_stream(stream_id, int(error_code)))
        self._remove(st, reset=True)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        increment = self.recv.process(acknowledged_size)
        if increment:
            self.out.append(frames.window_update(0, increment))
        st = self.streams.get(stream_id)
        if st is not None and not st.remote_closed:
            increment = st.recv.process(acknowledged_size)
            if increment:
                self.out.append(frames.window_update(stream_id, increment))

    def forget_stream(self, stream_id: int) -> None:
        """Closed streams leave the table at once here; nothing to do."""

    def _end_local(self, st: Stream) -> None:
        st.local_closed = True
        if st.remote_closed:
            self._remove(st, reset=False)

    def _end_remote(self, st: Stream) -> None:
        st.remote_closed = True
        if st.local_closed:
            self._remove(st, reset=False)

    def _remove(self, st: Stream, *, reset: bool) -> None:
        if self.streams.pop(st.stream_id, None) is None:
            return
        if st.inbound:
            self.open_inbound -= 1
        self.remember_closed(st.stream_id, reset)

    def remember_closed(self, stream_id: int, reset: bool) -> None:
        # Forgotten oldest first, in the order of a deque: taking a dict's first key
        # scans the slots its deletions left, which grows with the streams served.
        memory = self.closed_by_reset
        if stream_id not in memory:
            self._closed_order.append(stream_id)
        memory[stream_id] = reset
        if len(self._closed_order) > CLOSED_MEMORY:
            del memory[self._closed_order.popleft()]
