"""Request bodies that can be sent again, up to a cap (linkerd ``replay.rs``, ``Capped``).

A body already in memory (the usual case: it arrived with the head) is
replayable as long as it is within the cap. A streaming body is sent through a
:class:`_Tee` that keeps a copy up to the cap while the first try streams it:

* if the first try read it to its end within the cap, a retry sends the copy;
* if the connection was never made (so nothing read it), a retry sends the
  tee itself;
* otherwise (too big, or cut off mid-way) the request is not retried, and it is
  not failed either: the first try's outcome stands.

Nothing here reads ahead, so a streaming upload is never held back waiting to
be buffered.
"""

from __future__ import annotations

from plait.sdk import BufferedBody, MessageBody

__all__ = ["Replay"]


class _Tee(MessageBody):
    def __init__(self, source: MessageBody, cap: int) -> None:
        self._source = source
        self._cap = cap
        self.copy: bytearray | None = bytearray()
        self.started = False
        self.ended = False

    async def read(self) -> bytes:
        self.started = True
        chunk = await self._source.read()
        if not chunk:
            self.ended = True
            self.trailers = self._source.trailers
        elif self.copy is not None:
            if len(self.copy) + len(chunk) > self._cap:
                self.copy = None
            else:
                self.copy += chunk
        return chunk


class Replay:
    """Hands out the body for each try: :meth:`first`, then :meth:`again` per retry."""

    __slots__ = ("_data", "_first_body", "_tee", "_trailers")

    def __init__(self, body: MessageBody, cap: int) -> None:
        self._tee: _Tee | None = None
        self._data: bytes | None = None
        self._trailers = body.trailers
        whole = body.whole
        if whole is not None:
            self._data = whole if len(whole) <= cap else None
        else:
            self._tee = _Tee(body, cap)
        self._first_body = body

    def first(self) -> MessageBody:
        """The body for the first try: the request's own, or the tee that copies it."""
        return self._tee if self._tee is not None else self._first_body

    def again(self, never_sent: bool) -> MessageBody | None:
        """The body for one more try, or ``None`` if it cannot be replayed.

        ``never_sent``: the last try failed to connect, so no task is reading the body."""
        if self._data is not None:
            return BufferedBody(self._data, self._trailers)
        tee = self._tee
        if tee is None:
            return None  # in memory but over the cap
        if not tee.started and never_sent:
            return tee
        if tee.ended and tee.copy is not None:
            return BufferedBody(bytes(tee.copy), tee.trailers)
        return None
