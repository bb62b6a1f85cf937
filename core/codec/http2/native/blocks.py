"""plait's own HTTP/2 connection: how errors are answered, and header blocks.

Theory of operation: :class:`BlockReceiver` holds what the receiving half
(``inbound.py``) needs besides the handling of single frames. Errors: a connection
error queues GOAWAY (except while the client preface is still awaited: the peer does
not speak HTTP/2, §3.4) and raises ``WireError``, or ``Abuse`` for a limit of
``limits.py``; a stream error queues RST_STREAM and, for a stream in the table, drops it
and reports ``StreamReset(remote_reset=False)``.

Header blocks: HEADERS opens a block, CONTINUATION frames extend it (the reader
admits nothing else in between) and END_HEADERS completes it. Every block is
HPACK-decoded, also one whose stream is refused, reset or in error, so that the
decoder's table stays in step with the peer's encoder; a block that does not decode is
COMPRESSION_ERROR, one over the header-list bound an HPACK bomb (ENHANCE_YOUR_CALM).
Then the block opens a stream (a request: server side; refused with REFUSED_STREAM over
our SETTINGS_MAX_CONCURRENT_STREAMS), or is a response head (1xx first, any number),
or trailers (which must end the stream). A malformed message (``validate.py``) is a
stream error PROTOCOL_ERROR.
"""

from __future__ import annotations

from typing import NoReturn

from h2 import events as h2e

from plait.core.codec.hpack import HeaderListTooLarge, HpackError

from .. import frames as fr
from ..frames import Frame
from ..limits import MAX_UNREAD_ANSWERS, Abuse
from .errors import WireError
from .outbound import ConnectionBase
from .state import Stream
from .validate import REQUEST, RESPONSE, TRAILERS, Malformed, content_length, validate

__all__ = ["ENDED", "BlockReceiver"]

ENDED = h2e.StreamEnded(stream_id=0)  # what the codec checks is that it is there


class BlockReceiver(ConnectionBase):
    """Errors and header blocks for :class:`~.inbound.NativeConnection`."""

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
            ev.stream_ended = ENDED
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
            ev.stream_ended = ENDED
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
        ev.stream_ended = ENDED
        self._end_remote(st)
        events.append(ev)
