"""plait's own HTTP/2 connection, its receiving half: frames in, ``h2`` events out.

Theory of operation: :meth:`NativeConnection.receive_data` feeds the frame reader
(``frame_reader.py``, which validates each frame) and handles each frame by type,
returning the events ``h2.H2Connection.receive_data`` would, with plait's deviations
(``conn.py``) built in: a malformed message or a content-length mismatch is a stream
error (RST_STREAM PROTOCOL_ERROR and a ``StreamReset(remote_reset=False)``), a stream
over our SETTINGS_MAX_CONCURRENT_STREAMS is refused with REFUSED_STREAM and never
surfaces, GOAWAY leaves the connection open, and the limits of ``limits.py`` raise
:class:`~..limits.Abuse`.

Header blocks and the answers to errors are ``blocks.py``'s. Connection errors queue
GOAWAY and raise; events of the same call are then dropped, as h2 does, and the codec
resets every stream. Stream errors queue RST_STREAM and go on.

Stream states (§5.1), as the ``h2`` reference reads them: a frame on a stream id above
the highest seen of its parity is on an idle stream (only HEADERS may open one, and only
the peer's parity; DATA, RST_STREAM or WINDOW_UPDATE there is a connection error
PROTOCOL_ERROR). At or below it and not in the table, the stream is closed: DATA is
credited to the connection window and answered RST_STREAM STREAM_CLOSED; HEADERS is
answered the same if the stream was reset, is a connection error STREAM_CLOSED if it
ended, and PROTOCOL_ERROR if it never opened (a lower id than one the peer opened since,
§5.1.1); RST_STREAM and WINDOW_UPDATE are ignored. DATA or HEADERS after the peer's
END_STREAM on a stream still open our way is a stream error STREAM_CLOSED.
"""

from __future__ import annotations

from h2 import events as h2e

from .. import frames as fr
from ..frame_reader import StreamFrameError
from ..frames import Frame, FrameError
from .blocks import ENDED, BlockReceiver
from .state import MAX_WINDOW

__all__ = ["NativeConnection"]


class NativeConnection(BlockReceiver):
    """plait's HTTP/2 connection; see the module docstrings of this and ``outbound.py``."""

    def receive_data(self, data: bytes) -> list[h2e.Event]:
        events: list[h2e.Event] = []
        reader = self.reader
        reader.feed(data)
        while True:
            try:
                f = reader.next_frame()
            except StreamFrameError as bad:  # a HEADERS frame in error: decode its block first
                self._headers(bad.frame, events, bad.code)
                continue
            except FrameError as exc:
                if exc.stream_id:
                    self._stream_error(exc.stream_id, exc.code, events)
                    continue
                self._fail(exc.code, str(exc), exc.reason or None)
            if f is None:
                return events
            t = f.type
            if t == fr.DATA:
                self._data(f, events)
            elif t == fr.HEADERS:
                self._headers(f, events, 0)
            elif t == fr.CONTINUATION:
                self._continuation(f, events)
            elif t == fr.WINDOW_UPDATE:
                self._window_update(f, events)
            elif t == fr.RST_STREAM:
                self._rst_stream(f, events)
            elif t == fr.SETTINGS:
                self._settings(f, events)
            elif t == fr.PING:
                if not f.flags & fr.FLAG_ACK:
                    self._answer()
                    self.out.append(fr.ping(f.data, True))
            elif t == fr.GOAWAY:
                ev = h2e.ConnectionTerminated()
                ev.error_code = f.error_code
                ev.last_stream_id = f.last_stream_id
                ev.additional_data = f.data
                events.append(ev)
            elif t == fr.PUSH_PROMISE:
                self._fail(fr.PROTOCOL_ERROR, "PUSH_PROMISE, which we never allow")
            # PRIORITY: parsed (and checked) by the reader, otherwise ignored

    # -- DATA ------------------------------------------------------------------------------

    def _data(self, f: Frame, events: list[h2e.Event]) -> None:
        sid = f.stream_id
        n = f.length
        if not self.recv.consume(n):
            self._fail(fr.FLOW_CONTROL_ERROR, "DATA over the connection window")
        st = self.streams.get(sid)
        if st is None or st.remote_closed or not st.head_received:
            if st is None and self._idle(sid):
                self._fail(fr.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            self.acknowledge_received_data(n, sid)  # nobody will see these octets
            if st is not None:
                code = fr.STREAM_CLOSED if st.remote_closed else fr.PROTOCOL_ERROR
                self._stream_error(sid, code, events)
            else:
                self.out.append(fr.rst_stream(sid, fr.STREAM_CLOSED))
            return
        if not st.recv.consume(n):
            self._fail(fr.FLOW_CONTROL_ERROR, f"DATA over the window of stream {sid}")
        data = f.data
        end = bool(f.flags & fr.FLAG_END_STREAM)
        st.received += len(data)
        expected = st.content_length
        if expected >= 0 and (st.received > expected or (end and st.received != expected)):
            self.acknowledge_received_data(n, sid)
            self._stream_error(sid, fr.PROTOCOL_ERROR, events)
            return
        ev = h2e.DataReceived(stream_id=sid, data=data, flow_controlled_length=n)
        if end:
            ev.stream_ended = ENDED
            self._end_remote(st)
        events.append(ev)

    # -- control frames ----------------------------------------------------------------

    def _rst_stream(self, f: Frame, events: list[h2e.Event]) -> None:
        sid = f.stream_id
        st = self.streams.get(sid)
        if st is None:
            if self._idle(sid):
                self._fail(fr.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
            return
        if st.inbound and not st.headers_sent and self.resets.reset():
            self._fail(
                fr.ENHANCE_YOUR_CALM,
                "too many streams reset by the client (rapid reset)",
                "rapid_reset",
            )
        self._remove(st, reset=False)
        events.append(h2e.StreamReset(stream_id=sid, error_code=f.error_code, remote_reset=True))

    def _window_update(self, f: Frame, events: list[h2e.Event]) -> None:
        sid = f.stream_id
        if not sid:
            self.send_window += f.increment
            if self.send_window > MAX_WINDOW:
                self._fail(fr.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            st = self.streams.get(sid)
            if st is None:
                if self._idle(sid):
                    self._fail(fr.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
                return
            st.send_window += f.increment
            if st.send_window > MAX_WINDOW:
                self._stream_error(sid, fr.FLOW_CONTROL_ERROR, events)
                return
        events.append(h2e.WindowUpdated(stream_id=sid, delta=f.increment))

    def _settings(self, f: Frame, events: list[h2e.Event]) -> None:
        if f.flags & fr.FLAG_ACK:
            if self._unacked_settings:
                self._apply_local(self._unacked_settings.pop(0))
            return
        self._answer()
        remote = self.remote_settings
        for code, value in f.settings:
            if code == 0x1:
                remote.header_table_size = value
                self.encoder.header_table_size = value
            elif code == 0x2:
                remote.enable_push = value
            elif code == 0x3:
                remote.max_concurrent_streams = value
            elif code == 0x4:
                delta = value - remote.initial_window_size
                remote.initial_window_size = value
                for st in self.streams.values():
                    st.send_window += delta
                    if st.send_window > MAX_WINDOW:
                        self._fail(fr.FLOW_CONTROL_ERROR, "a stream window over 2^31-1")
            elif code == 0x5:
                remote.max_frame_size = value
            elif code == 0x6:
                remote.max_header_list_size = value
        self.out.append(fr.settings_ack())
        events.append(h2e.RemoteSettingsChanged())

    def _apply_local(self, pairs: list[tuple[int, int]]) -> None:
        """The peer acknowledged our SETTINGS: what they change takes effect now."""
        local = self.local_settings
        for code, value in pairs:
            if code == 0x4:
                delta = value - local.initial_window_size
                local.initial_window_size = value
                for st in self.streams.values():
                    st.recv.window += delta
                    st.recv.target += delta
            elif code == 0x3:
                local.max_concurrent_streams = value
