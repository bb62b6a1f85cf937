"""Group commit: the CA requests of one event-loop turn share one ledger commit.

Theory of operation: a request runs its CA work (token redemption, signing, the
ledger writes) through :meth:`GroupCommit.run`. The first request finding no open batch
opens one (:meth:`Ledger.begin_batch`) and becomes its *leader*; after its own work it
yields once to the event loop, cancel-shielded, so that the requests already received
on other connections do their work inside the same batch (as *followers*), and then
commits the batch and wakes them. No request's answer leaves before the commit that
holds its writes, so a certificate handed out is always recorded (and its token always
spent), exactly as with a commit per request. If the commit fails, every request of the
batch fails with :class:`LedgerUnavailable` (HTTP 503) and nothing of the batch is
kept: no certificate of it was handed out. So does a request that cannot open a batch
(another process holds the ledger's write lock past its busy timeout); its work is not
done at all.

A request alone (one client, or a quiet CA) is a batch of one: the cost is one extra
pass of the event loop. Requests refused by the CA write nothing (their savepoint is
rolled back) and return their refusal after the commit like the others.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._ledger import Ledger

__all__ = ["GroupCommit", "LedgerUnavailable"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LedgerUnavailable(Exception):
    """The ledger could not commit a batch: none of its certificates was handed out."""


class _Batch:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: sqlite3.Error | None = None
        self.size = 0


class GroupCommit:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._open: _Batch | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` inside the current batch; its result once the batch is committed."""
        batch = self._open
        leader = batch is None
        if batch is None:
            try:
                self.ledger.begin_batch()
            except sqlite3.Error as exc:  # locked by another process past the busy timeout
                log.error("CA: the ledger cannot start a transaction: %s", exc)
                raise LedgerUnavailable(f"the CA's ledger could not be written: {exc}") from None
            batch = self._open = _Batch()
        batch.size += 1
        try:
            result = work()
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        if leader:
            await self._commit(batch)
        else:
            await batch.done.wait()
        if batch.error is not None:
            raise LedgerUnavailable(f"the CA's ledger could not be written: {batch.error}")
        if failure is not None:
            raise failure
        return result

    async def _commit(self, batch: _Batch) -> None:
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()  # let received requests join
        finally:
            self._open = None
            try:
                self.ledger.commit_batch()
            except sqlite3.Error as exc:
                batch.error = exc
                log.error("CA: ledger commit of %d request(s) failed: %s", batch.size, exc)
            batch.done.set()
