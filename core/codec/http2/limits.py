"""What one HTTP/2 peer may make us do: the abuse limits of the codec.

Theory of operation: an HTTP/2 peer can make a server work or buffer without
asking for anything a proxy would forward. Each limit below bounds one such
lever; crossing it is a connection error of type ``ENHANCE_YOUR_CALM`` (RFC 9113
§7), raised from inside h2's frame loop (:class:`~.conn.PlaitH2Connection`)
so that the rest of the peer's input is never parsed: h2 queues the GOAWAY and
the codec resets every stream the caller knows.

* **Rapid reset** (CVE-2023-44487): a stream the client resets before we sent
  its response head is *premature*. Opening and resetting streams costs the
  client two frames and us a request each. :class:`ResetBudget` allows
  ``RESET_LIMIT`` premature resets per ``RESET_INTERVAL`` seconds, and more only
  while they stay under half of the streams opened in that window (a client
  that cancels a share of its calls, as gRPC clients do, keeps its connection).
  A stream reset in the same read that opened it is never surfaced at all
  (:class:`~plait.core.server._h2.H2Connection` drops it before it starts).
* **Control-frame answers nobody reads**: every PING and SETTINGS frame makes
  us queue an acknowledgement. A peer that sends them and never reads grows
  our output buffer without bound. At most ``MAX_UNREAD_ANSWERS`` answers may
  be produced while the peer has not read what we wrote before (the
  connection layer calls :meth:`PlaitH2Connection.output_drained` when the
  transport is writable again).
* **An unterminated header block**: HEADERS without END_HEADERS followed by
  CONTINUATION frames is buffered whole before HPACK sees it. It may not grow
  past ``HEADER_BLOCK_FACTOR`` times the advertised
  SETTINGS_MAX_HEADER_LIST_SIZE (an encoded block is never larger than the
  list it decodes to, so a larger one could only be refused anyway; up to
  that size it is decoded and answered ``431`` per stream).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from h2.exceptions import DenialOfServiceError

__all__ = [
    "HEADER_BLOCK_FACTOR",
    "MAX_UNREAD_ANSWERS",
    "RESET_INTERVAL",
    "RESET_LIMIT",
    "Abuse",
    "Clock",
    "ResetBudget",
]

Clock = Callable[[], float]

RESET_LIMIT = 200
RESET_INTERVAL = 10.0
MAX_UNREAD_ANSWERS = 1000
HEADER_BLOCK_FACTOR = 4


class Abuse(DenialOfServiceError):
    """A limit of this module was crossed; ``reason`` names which (``rapid_reset``,
    ``control_flood``, ``header_block``), for the sidecar's connection-error counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ResetBudget:
    """Premature client resets per window; see the module docstring.

    The window starts at the first premature reset after the previous window
    ended, so an idle connection costs no clock reads.
    """

    __slots__ = ("_clock", "_ends", "_opened", "_resets", "interval", "limit")

    def __init__(
        self,
        *,
        limit: int = RESET_LIMIT,
        interval: float = RESET_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._ends = 0.0
        self._opened = 0
        self._resets = 0

    def opened(self) -> None:
        """The peer opened a stream."""
        self._opened += 1

    def reset(self) -> bool:
        """The peer reset a stream before its response started; ``True``: over budget."""
        now = self._clock()
        if now >= self._ends:
            self._ends = now + self.interval
            self._opened = 1  # the stream being reset was opened in this window
            self._resets = 0
        self._resets += 1
        return self._resets > self.limit and 2 * self._resets > self._opened
