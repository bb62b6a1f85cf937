"""The CA's ledger: issued leaves and consumed join tokens, in ``<data-dir>/ca/ledger.db``.

Theory of operation: one SQLite file (WAL, ``synchronous=NORMAL``, mode 0600) next to
the CA's keys, written synchronously from the event loop. A certificate request does
its work (checks, signing) without writing; what it must record is an :class:`Entry`
(the join token it spends, if any, and the leaf's row), and :meth:`Ledger.write` records
the entries of several requests in one short transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``,
by :class:`~plait.controlplane.ca.GroupCommit` for the requests of one event-loop turn).
The transaction holds the write lock only while its rows are inserted, so another
process writing the same ledger waits microseconds, not a request's work. A committed
transaction survives the process (a crash, a kill, a restart); the last transactions
before a power loss may not (``synchronous=NORMAL`` in WAL mode). Two tables:

* ``leaves``: serial, SPIFFE ID, not_after, the fingerprint of the root the leaf
  chains to, and the SHA-256 fingerprint of the leaf itself. A renewal is accepted only
  for a leaf found here (the CA issued it): the presented certificate's fingerprint must
  equal the recorded one, which proves it is the very certificate the CA signed at the
  cost of a hash instead of a signature check. A root rotation ends when no unexpired
  leaf chains to the old root any more.
* ``used_tokens``: the id of every join token redeemed, with its expiry. An entry's
  token id is inserted before its leaf, by an insert that fails if the id is there
  already (written by this transaction, an earlier one, or another process): then the
  entry's leaf is not recorded and :meth:`Ledger.write` reports it refused, so its
  certificate is never handed out. A token is single use across restarts, processes and
  concurrent requests, and a failed issuance does not spend it. Rows past their expiry
  are pruned (an expired token is refused by its expiry anyway).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["Entry", "LeafRecord", "Ledger"]


class Entry(NamedTuple):
    """What one issuance records: the token it spends (if any) and its leaf's row."""

    token: tuple[str, float] | None
    """``(id, expires)`` of the join token, ``None`` for a renewal."""
    leaf: tuple[str, str, float, str, float, str]
    """``(serial hex, SPIFFE ID, not_after, root fingerprint, issued_at, fingerprint)``."""


class LeafRecord(NamedTuple):
    identity: str
    not_after: float
    root: str
    fingerprint: str | None
    """SHA-256 of the leaf's DER, hex (``None`` for leaves recorded without one)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    serial TEXT PRIMARY KEY, identity TEXT NOT NULL, not_after REAL NOT NULL,
    root TEXT NOT NULL, issued_at REAL NOT NULL, fingerprint TEXT);
CREATE INDEX IF NOT EXISTS leaves_root ON leaves (root, not_after);
CREATE TABLE IF NOT EXISTS used_tokens (id TEXT PRIMARY KEY, expires REAL NOT NULL);
"""


_INSERT_LEAF = (
    "INSERT OR REPLACE INTO leaves (serial, identity, not_after, root, issued_at, fingerprint)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class Ledger:
    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        """``busy_timeout``: how long a write waits for another process's (seconds)."""
        self.path = path
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(leaves)")}
        if "fingerprint" not in columns:  # a ledger written before leaves had fingerprints
            self._db.execute("ALTER TABLE leaves ADD COLUMN fingerprint TEXT")
        self.commits = 0
        """Transactions committed (each holding one or more requests' writes)."""
        self._prune_at = 0.0

    def write(self, entries: Sequence[Entry], now: float) -> list[bool]:
        """Record ``entries`` in one transaction; per entry whether it was recorded.

        ``False``: the entry's token was used before (its leaf is not recorded).

        Raises:
            sqlite3.Error: the transaction could not start (another process holds the
                write lock past the busy timeout) or commit; nothing of it is kept.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            kept: list[bool] = []
            rows = []
            for token, leaf in entries:
                if token is not None:
                    try:
                        db.execute("INSERT INTO used_tokens VALUES (?, ?)", token)
                    except sqlite3.IntegrityError:
                        kept.append(False)
                        continue
                kept.append(True)
                rows.append(leaf)
            db.executemany(_INSERT_LEAF, rows)
            if now >= self._prune_at:  # consumed tokens and long-expired leaves
                self.prune(now)
                self._prune_at = now + 3600.0
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        return kept

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are kept together: all, or none if an exception leaves."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self.commits += 1

    def close(self) -> None:
        self._db.close()

    def record_leaf(
        self,
        serial: int,
        identity: str,
        not_after: float,
        root: str,
        issued_at: float,
        fingerprint: str | None = None,
    ) -> None:
        self._db.execute(
            _INSERT_LEAF, (format(serial, "x"), identity, not_after, root, issued_at, fingerprint)
        )

    def leaf(self, serial: int) -> LeafRecord | None:
        """The record of an issued leaf, or ``None``."""
        row = self._db.execute(
            "SELECT identity, not_after, root, fingerprint FROM leaves WHERE serial = ?",
            (format(serial, "x"),),
        ).fetchone()
        if row is None:
            return None
        return LeafRecord(str(row[0]), float(row[1]), str(row[2]), row[3])

    def live_on_root(self, root: str, now: float) -> tuple[int, float | None]:
        """How many unexpired leaves chain to ``root``, and when the last of them expires."""
        count, last = self._db.execute(
            "SELECT COUNT(*), MAX(not_after) FROM leaves WHERE root = ? AND not_after > ?",
            (root, now),
        ).fetchone()
        return int(count), (float(last) if last is not None else None)

    def counts(self, now: float) -> dict[str, int]:
        total, live = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(not_after > ?), 0) FROM leaves", (now,)
        ).fetchone()
        return {"issued": int(total), "unexpired": int(live)}

    def consume_token(self, token_id: str, expires: float, now: float) -> bool:
        """Mark ``token_id`` used; ``False`` if it was used before."""
        try:
            self._db.execute("INSERT INTO used_tokens VALUES (?, ?)", (token_id, expires))
        except sqlite3.IntegrityError:
            return False
        return True

    def prune(self, now: float, keep_leaves_for: float = 86400.0) -> None:
        """Drop consumed tokens past expiry and leaves expired more than a day ago."""
        self._db.execute("DELETE FROM used_tokens WHERE expires < ?", (now,))
        self._db.execute("DELETE FROM leaves WHERE not_after < ?", (now - keep_leaves_for,))
