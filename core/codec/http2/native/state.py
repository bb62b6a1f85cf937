"""Per-stream and connection state of plait's own HTTP/2 connection (RFC 9113 §5.1, §5.2, §6.5).

Theory of operation: a :class:`Stream` exists from the HEADERS that opens it
(idle -> open, or half-closed when END_STREAM rides on them) until both sides
have ended it or either reset it (closed); the connection then drops it, so the
table holds open and half-closed streams only, and a stream id at or below the
highest one seen that is not in the table is closed. ``local_closed`` and
``remote_closed`` are the two halves of §5.1's half-closed states.

Flow control: each direction of a stream and of the connection has a window.
``send_window`` is what the peer lets us send; the receive side is a
:class:`RecvWindow`: ``window`` is what the peer may still send, ``target`` the
size we advertise, ``processed`` what the application has consumed but we have
not yet handed back. Credit goes back (WINDOW_UPDATE) once the consumed bytes
reach half the target, or any amount when the window is empty and a quarter
(at most 1024 octets) is consumed, as the ``h2`` reference does; so a fast
consumer costs one WINDOW_UPDATE per half window, not one per DATA frame.

:class:`Settings` holds one side's SETTINGS values (defaults of §6.5.2).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "RecvWindow", "Settings", "Stream"]

DEFAULT_WINDOW: Final = 65535
MAX_WINDOW: Final = (1 << 31) - 1


class RecvWindow:
    """The receive window of a stream or the connection; see the module docstring."""

    def __init__(self, size: int) -> None:
        self.window = size
        self.target = size
        self.processed = 0

    def consume(self, n: int) -> bool:
        """The peer sent ``n`` flow-controlled octets; ``False`` if over the window."""
        if n > self.window:
            return False
        self.window -= n
        return True

    def grow(self, n: int) -> None:
        """We open the window by ``n`` (a larger target; the caller sends the update)."""
        self.window += n
        self.target += n

    def process(self, n: int) -> int:
        """The application consumed ``n`` octets; the increment to send now, or 0."""
        self.processed += n
        processed = self.processed
        target = self.target
        if processed >= target // 2 or (self.window == 0 and processed > min(1024, target // 4)):
            increment = min(processed, target - self.window)
            self.processed = 0
            self.window += increment
            return increment
        return 0

    @property
    def balanced(self) -> bool:
        """Every octet received is either still in the window or counted as processed."""
        return self.window + self.processed == self.target


class Settings:
    """One side's SETTINGS (RFC 9113 §6.5.2), with the defaults that hold before any."""

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams = 2**32 + 1  # unlimited, as h2 says
        self.initial_window_size = DEFAULT_WINDOW
        self.max_frame_size = 16384
        self.max_header_list_size = 2**32 + 1


class Stream:
    """One open or half-closed stream."""

    def __init__(self, stream_id: int, send_window: int, recv_window: int, inbound: bool) -> None:
        self.stream_id = stream_id
        self.inbound = inbound  # the peer opened it
        self.send_window = send_window
        self.recv = RecvWindow(recv_window)
        self.local_closed = False
        self.remote_closed = False
        self.head_received = False  # the request, or the final response head
        self.headers_sent = False  # we sent a (response or request) head
        self.content_length = -1
        self.received = 0
        self.head_request = False  # client side: a HEAD request (its response has no body)
