"""plait's own HTTP/2 connection, its receiving half: frames in, ``h2`` events out.

Theory of operation: :meth:`NativeConnection.receive_data` feeds the frame reader
(``frame_reader.py``, which validates each frame) and handles each frame by type,
returning the events ``h2.H2Connection.receive_data`` would, with plait's deviations
(``conn.py``) built in: a malformed message or a content-length mismatch is a stream
error (RST_STREAM PROTOCOL_ERROR and a ``StreamReset(remote_reset=False)``), a stream
over our SETTINGS_MAX_CONCURRENT_STREAMS is refused with REFUSED_STREAM and never
surfaces, GOAWAY leaves the connection open, and the limits of ``limits.py`` raise
:class:`~..limits.Abuse`.

Every header block is HPACK-decoded, also one whose stream is refused, reset or in
error, so that the decoder's table stays in step with the peer's encoder. A block
that does not decode is COMPRESSION_ERROR. Connection errors queue GOAWAY and raise
(``WireError``, or ``Abuse``); events of the same call are then dropped, as h2 does,
and the codec resets every stream. Stream errors queue RST_STREAM and go on.

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

from typing import NoReturn

from h2 import events as h2e

from plait.core.codec.hpack import HeaderListTooLarge, HpackError

from .. import frames as fr
from ..frame_reader import StreamFrameError
from ..frames import Frame, FrameError
from ..limits import MAX_UNREAD_ANSWERS, Abuse
from .errors import WireError
from .outbound import ConnectionBase
from .state import MAX_WINDOW, Stream
from .validate import REQUEST, RESPONSE, TRAILERS, Malformed, content_length, validate

__all__ = ["NativeConnection"]

_ENDED = h2e.StreamEnded(stream_id=0)  # what the codec checks is that it is there


class NativeConnection(ConnectionBase):
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

    # -- errors --------------------------------------------------------------------------

    def _fail(self, code: int, message: str, reason: str | None = None) -> NoReturn:
        if not self.reader.awaiting_preface:  # else the peer does not speak HTTP/2 (§3.4)
            self.close_connection(code)
        if reason:  # a limit of limits.py
            raise Abuse(reason, message)
        raise WireError(code, message, reason)

    def _stream_error(self, stream_id: int, code: int, events: list[h2e.Event]) -> None:
        st = self.streams.get(stream_id)
        if st is None:
            self.out.append(fr.rst_stream(stream_id, code))
            return
        self.reset_stream(stream_id, code)
        events.append(h2e.StreamReset(stream_id=stream_id, error_code=code, remote_reset=False))

    def _answer(self) -> None:
        self.unread_answers += 1
        if self.unread_answers > MAX_UNREAD_ANSWERS:
            self._fail(
                fr.ENHANCE_YOUR_CALM, "too many control frames while not reading", "control_flood"
            )

    def _idle(self, stream_id: int) -> bool:
        if stream_id % 2 == self._parity:
            return stream_id > self.highest_outbound_stream_id
        return stream_id > self.highest_inbound_stream_id

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
            ev.stream_ended = _ENDED
            self._end_remote(st)
        events.append(ev)

    # -- header blocks -----------------------------------------------------------------

    def _headers(self, f: Frame, events: list[h2e.Event], error: int) -> None:
        if f.flags & fr.FLAG_END_HEADERS:
            self._block_frame = None
            self._header_block(f, f.data, events, error)
        else:
            self._block_frame = f
            self._block = [f.data]
            self._block_error = error

    def _continuation(self, f: Frame, events: list[h2e.Event]) -> None:
        first = self._block_frame
        if first is None:  # the reader admits CONTINUATION only inside a block
            self._fail(fr.PROTOCOL_ERROR, "CONTINUATION outside a header block")
        self._block.append(f.data)
        if f.flags & fr.FLAG_END_HEADERS:
            self._block_frame = None
            self._header_block(first, b"".join(self._block), events, self._block_error)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return self.decoder.decode(block)
        except HeaderListTooLarge as exc:
            self._fail(fr.ENHANCE_YOUR_CALM, str(exc))  # an HPACK bomb
        except HpackError as err:  # (a name of its own: mypyc types each except variable)
            self._fail(fr.COMPRESSION_ERROR, f"undecodable header block: {err}")

    def _header_block(self, f: Frame, block: bytes, events: list[h2e.Event], error: int) -> None:
        fields = self._decode(block)
        sid = f.stream_id
        end = bool(f.flags & fr.FLAG_END_STREAM)
        st = self.streams.get(sid)
        if st is None:
            if not self._idle(sid):  # a closed stream
                reset = self.closed_by_reset.get(sid)
                if reset is None:
                    self._fail(
                        fr.PROTOCOL_ERROR, f"HEADERS on stream {sid}, below one opened since"
                    )
                elif not reset:
                    self._fail(fr.STREAM_CLOSED, f"HEADERS on ended stream {sid}")
                self.out.append(fr.rst_stream(sid, fr.STREAM_CLOSED))
                return
            if sid % 2 == self._parity:
                self._fail(fr.PROTOCOL_ERROR, f"HEADERS opening stream {sid}, of our parity")
            self._open(sid, fields, end, events, error)
            return
        if error:
            self._stream_error(sid, error, events)
        elif st.remote_closed:
            self._stream_error(sid, fr.STREAM_CLOSED, events)
        elif not st.head_received:  # client side: a response head
            self._response(st, fields, end, events)
        else:
            self._trailers(st, fields, end, events)

    def _open(
        self,
        sid: int,
        fields: list[tuple[bytes, bytes]],
        end: bool,
        events: list[h2e.Event],
        error: int,
    ) -> None:
        """HEADERS from the peer opening stream ``sid`` (a request: we are the server)."""
        self.highest_inbound_stream_id = sid
        self.resets.opened()
        if error:
            self.out.append(fr.rst_stream(sid, error))
            self.remember_closed(sid, True)
            return
        if self.open_inbound >= self.local_settings.max_concurrent_streams:
            self.out.append(fr.rst_stream(sid, fr.REFUSED_STREAM))
            self.remember_closed(sid, True)
            return
        st = Stream(
            sid,
            self.remote_settings.initial_window_size,
            self.local_settings.initial_window_size,
            inbound=True,
        )
        self.streams[sid] = st
        self.open_inbound += 1
        try:
            fields = validate(fields, REQUEST)
            st.content_length = content_length(fields)
        except Malformed:
            self._stream_error(sid, fr.PROTOCOL_ERROR, events)
            return
        st.head_received = True
        ev = h2e.RequestReceived(stream_id=sid, headers=fields)
        if end:
            ev.stream_ended = _ENDED
            self._end_remote(st)
        events.append(ev)

    def _response(
        self, st: Stream, fields: list[tuple[bytes, bytes]], end: bool, events: list[h2e.Event]
    ) -> None:
        sid = st.stream_id
        try:
            fields = validate(fields, RESPONSE)
            informational = fields[0][1][:1] == b"1"
            if informational and end:
                raise Malformed("an informational response ending the stream")
            if not informational:
                st.content_length = 0 if st.head_request else content_length(fields)
        except Malformed:
            self._stream_error(sid, fr.PROTOCOL_ERROR, events)
            return
        if informational:
            events.append(h2e.InformationalResponseReceived(stream_id=sid, headers=fields))
            return
        st.head_received = True
        ev = h2e.ResponseReceived(stream_id=sid, headers=fields)
        if end:  # (no body: a content-length may describe what a GET would have had)
            ev.stream_ended = _ENDED
            self._end_remote(st)
        events.append(ev)

    def _trailers(
        self, st: Stream, fields: list[tuple[bytes, bytes]], end: bool, events: list[h2e.Event]
    ) -> None:
        sid = st.stream_id
        try:
            if not end:
                raise Malformed("trailers without END_STREAM")
            fields = validate(fields, TRAILERS)
            if st.content_length >= 0 and st.received != st.content_length:
                raise Malformed("body shorter than its content-length")
        except Malformed:
            self._stream_error(sid, fr.PROTOCOL_ERROR, events)
            return
        ev = h2e.TrailersReceived(stream_id=sid, headers=fields)
        ev.stream_ended = _ENDED
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
