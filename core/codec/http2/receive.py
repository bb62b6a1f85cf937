"""The receive half of the HTTP/2 codec: h2 events in, plait events out.

Theory of operation: :meth:`H2Receiver.receive_data` hands the bytes to h2 and
translates each h2 event with one dict lookup and one small handler; events h2
handles alone (PING, SETTINGS ACK, PRIORITY, StreamEnded, which the preceding
event already carries) are dropped. Nothing raises out of ``receive_data``:
a connection error from h2 (which has already queued GOAWAY) or any other
exception resets every open stream, then emits ``ConnectionTerminated``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from h2 import events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from plait.sdk import Headers

from .._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalReceived,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from .conn import (
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
)
from .flow import CodecCore, StreamRecord
from .headers import expects_continue, header_list_size, request_head, response_head

__all__ = ["H2Receiver"]

logger = logging.getLogger(__name__)


def _code_name(code: int) -> str:
    """``flow_control_error`` for 0x3 (RFC 9113 §7), ``error_0x..`` for an unknown code."""
    try:
        return ErrorCodes(code).name.lower()
    except ValueError:
        return f"error_{code:#x}"


class H2Receiver(CodecCore):
    """Translates h2 events; see the module docstring."""

    def __init__(self, conn: Any, *, client_side: bool, max_header_list_size: int) -> None:
        super().__init__(conn, client_side=client_side)
        self._max_header_list_size = max_header_list_size
        self.error_reason: str | None = None
        """Why the peer's input ended the connection (``rapid_reset``, ``flow_control_error``,
        ...), once it did; ``None`` otherwise (also after EOF or the peer's own GOAWAY)."""
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

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the transport; returns the events they complete.

        Args:
            data: what the transport read; ``b""`` means EOF.

        Returns:
            Events in wire order. Call :meth:`data_to_send` afterwards: input
            often produces output (SETTINGS ACK, PING ACK, WINDOW_UPDATE,
            flushed DATA, RST_STREAM, GOAWAY).

        Error handling: never raises. A connection error (the peer broke
        framing, HPACK, flow control or stream-state rules) queues GOAWAY and
        returns ``StreamReset(remote=False)`` for every open stream followed by
        ``ConnectionTerminated(error_code)``. At EOF every open stream gets
        ``StreamReset(INTERNAL_ERROR, remote=True)``, then ``ConnectionTerminated()``.
        After either, further input is ignored and ``send_*`` are no-ops.
        """
        if self._terminated:
            return []
        if not data:
            return self._lost(self._terminate_streams([], INTERNAL_ERROR, remote=True))
        try:
            h2_events = self._conn.receive_data(data)
        except ProtocolError as exc:  # h2 has queued GOAWAY with exc.error_code
            logger.debug("HTTP/2 connection error from peer: %s", exc)
            self.error_reason = getattr(exc, "reason", None) or _code_name(int(exc.error_code))
            return self._fail([], int(exc.error_code), goaway_queued=True)
        except Exception:  # h2 must not take the connection task down with it
            logger.warning("HTTP/2 codec: h2 raised on peer input", exc_info=True)
            self.error_reason = "protocol_error"
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
        fields = ev.headers
        end = ev.stream_ended is not None
        if self._goaway_last is not None and stream_id > self._goaway_last:
            self._send_reset(stream_id, REFUSED_STREAM)  # RFC 9113 §6.8
            return
        if header_list_size(fields) > self._max_header_list_size:
            self._refuse_431(stream_id, end)
            return
        self._streams[stream_id] = StreamRecord(remote_done=end)
        self._open += 1
        if not end and expects_continue(fields):
            out.append(RequestReceived(stream_id, request_head(fields), end, expect_continue=True))
        else:
            out.append(RequestReceived(stream_id, request_head(fields), end))

    def _refuse_431(self, stream_id: int, request_ended: bool) -> None:
        """Answer 431 (RFC 6585 §5) and, if the request is still coming, stop it (RFC 9113 §8.1)."""
        logger.debug("HTTP/2 stream %d: request header list too large, answered 431", stream_id)
        self._conn.send_headers(stream_id, [(b":status", b"431")], end_stream=True)
        if request_ended:
            self._conn.forget_stream(stream_id)
        else:
            self._send_reset(stream_id, NO_ERROR)

    def _on_response(self, ev: h2e.ResponseReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        st = self._streams.get(stream_id)
        if st is None or st.closed:
            return
        fields = ev.headers
        if header_list_size(fields) > self._max_header_list_size:
            logger.debug("HTTP/2 stream %d: response header list too large", stream_id)
            self._send_reset(stream_id, PROTOCOL_ERROR)
            self._drop(stream_id, st)
            out.append(StreamReset(stream_id, PROTOCOL_ERROR, remote=False))
            return
        end = ev.stream_ended is not None
        out.append(ResponseReceived(stream_id, response_head(fields), end))
        if end:
            self._remote_done(stream_id, st)

    def _on_informational(self, ev: h2e.InformationalResponseReceived, out: list[Event]) -> None:
        if ev.stream_id in self._streams:
            out.append(InformationalReceived(ev.stream_id, response_head(ev.headers)))

    def _on_trailers(self, ev: h2e.TrailersReceived, out: list[Event]) -> None:
        stream_id = ev.stream_id
        st = self._streams.get(stream_id)
        if st is None or st.closed:
            return
        trailers = Headers.from_lowercase_pairs(ev.headers)
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
