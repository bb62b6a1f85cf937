"""Group commit: the CA requests of one event-loop turn share one ledger transaction.

Theory of operation: a request does its CA work (checks, signing) without writing and
hands what it must record, an :class:`~plait.controlplane.ca._ledger.Entry`, to
:meth:`GroupCommit.record`. The first request finding no open batch opens one and
becomes its *leader*: it yields once to the event loop, cancel-shielded, so that the
requests already received on other connections add their entries to the same batch (as
*followers*), and then writes the batch in one transaction (:meth:`Ledger.write`) and
wakes them. No request's answer leaves before the commit that holds its entry, so a
certificate handed out is always recorded (and its token always spent), exactly as with
a transaction per request. An entry whose token the transaction finds used already
(earlier, by another request of the same batch, or by another process) is reported
refused and its certificate never leaves. If the transaction cannot start or commit,
every request of the batch fails with :class:`LedgerUnavailable` (HTTP 503) and nothing
of the batch is kept: no certificate of it was handed out, no token of it is spent.

A request alone (one client, or a quiet CA) is a batch of one: the cost is one extra
pass of the event loop. Requests refused before signing never join a batch.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import anyio
import anyio.lowlevel

from ._ledger import Entry, Ledger

__all__ = ["GroupCommit", "LedgerUnavailable"]

log = logging.getLogger(__name__)


class LedgerUnavailable(Exception):
    """The ledger could not commit a batch: none of its certificates was handed out."""


class _Batch:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.entries: list[Entry] = []
        self.kept: list[bool] = []
        self.error: Exception | None = None


class GroupCommit:
    def __init__(self, ledger: Ledger, clock: Callable[[], float]) -> None:
        """``clock``: the CA's time in Unix seconds (when consumed tokens are pruned)."""
        self.ledger = ledger
        self.clock = clock
        self._open: _Batch | None = None

    async def record(self, entry: Entry) -> bool:
        """Record ``entry`` with the current batch; once committed, whether it was kept
        (``False``: its join token was used before, nothing of it is recorded).

        Raises:
            LedgerUnavailable: the batch could not be written (nothing of it is kept).
        """
        batch = self._open
        leader = batch is None
        if batch is None:
            batch = self._open = _Batch()
        index = len(batch.entries)
        batch.entries.append(entry)
        if leader:
            await self._commit(batch)
        else:
            await batch.done.wait()
        if batch.error is not None:
            raise LedgerUnavailable(f"the CA's ledger could not be written: {batch.error}")
        return batch.kept[index]

    async def _commit(self, batch: _Batch) -> None:
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()  # let received requests join
        finally:
            self._open = None
            try:
                batch.kept = self.ledger.write(batch.entries, self.clock())
            except sqlite3.Error as exc:  # locked by another process past the busy timeout
                batch.error = exc
                log.error("CA: ledger write of %d request(s) failed: %s", len(batch.entries), exc)
            except Exception as exc:  # never leave the followers waiting
                batch.error = exc
                log.exception("CA: ledger write of %d request(s) failed", len(batch.entries))
            finally:
                batch.done.set()
