"""Whole messages from queued stream events: what a callback may hand on at once.

A callback driver (``driver.Inline``, ``H2Connection``) sees a stream's events as
reads bring them. When a message's events are all queued (its head, a small
body, maybe trailers), it is handed on as one event, and the exchange needs no
task to read its body. The limits keep this to small messages: at most
:data:`MAX_WHOLE` bytes of body in at most :data:`MAX_PARTS` events; anything
else streams, in a task, as it arrives.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from plait.sdk import Headers

from ..codec import DataReceived, Event, ResponseReceived, TrailersReceived

__all__ = ["MAX_WHOLE", "MORE", "STREAMED", "message_end", "take_body", "whole_response"]

MAX_PARTS: Final = 16
"""Queued events of one message before it streams in a task instead."""
MAX_WHOLE: Final = 64 * 1024
"""Larger bodies stream in a task."""
MORE: Final = -1
""":func:`message_end`: the message has not ended yet, and may still end whole."""
STREAMED: Final = -2
""":func:`message_end`: the message cannot be handed on whole (large, long, or reset)."""


def message_end(events: deque[Event], start: int, size: int) -> int:
    """Where the body that ``events[start:]`` continue ends, when it ends there whole.

    The index of the event that ends it: a ``DataReceived`` with ``end_stream``, or
    ``TrailersReceived`` after the data. Else :data:`MORE`, or :data:`STREAMED` once
    the body (``size`` bytes before ``start``) or its events are past the limits a
    whole message may have, or an event other than data or trailers comes first.
    """
    n = len(events)
    for i in range(start, n):
        ev = events[i]
        t = type(ev)
        if t is DataReceived:
            assert isinstance(ev, DataReceived)
            size += len(ev.data)
            if size > MAX_WHOLE:
                return STREAMED
            if ev.end_stream:
                return i
        elif t is TrailersReceived:
            return i
        else:
            return STREAMED
    return MORE if n < MAX_PARTS else STREAMED


def take_body(events: deque[Event], end: int, first: bytes) -> tuple[bytes, Headers | None]:
    """Consume ``events[:end + 1]`` (``message_end`` found ``end``): the whole body
    (``first``, then the data events') and the trailers, if it ended with them."""
    parts = [first]
    trailers = None
    for _ in range(end + 1):
        ev = events.popleft()
        if type(ev) is DataReceived:
            assert isinstance(ev, DataReceived)
            parts.append(ev.data)
        elif type(ev) is TrailersReceived:
            assert isinstance(ev, TrailersReceived)
            trailers = ev.trailers
    return b"".join(parts), trailers


def whole_response(events: deque[Event]) -> ResponseReceived | bool:
    """The whole response, consumed from ``events``, if they hold exactly a response
    head and its body, with or without trailers. A small one with a length may come in
    a few reads; one without is whole only if it ended in the reads that brought its
    head (an event stream must not wait for more). Else nothing is consumed; the
    answer is whether more events can still make it whole."""
    if not events:
        return True
    if type(first := events[0]) is not ResponseReceived:
        return False
    if first.end_stream:
        events.popleft()
        return first
    length = first.head.headers.get_raw(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_WHOLE):
        return False  # large: its head goes out now, through a task
    end = message_end(events, 1, len(first.body))
    if end < 0:
        return end == MORE and length is not None
    body, trailers = take_body(events, end, first.body)
    return ResponseReceived(first.stream_id, first.head, True, body, trailers)
