"""The embedded SQLite store (the default: a file in the data directory, no set-up).

Schema: ``resources`` holds the live documents with their create/mod
revisions; ``change_log`` is the revision log that watches read (one row per
changed resource, several rows per revision when one write changed several);
``meta`` holds the current revision, so it survives restarts and never goes
backwards, even when the last change was a delete. Every write, however many
resources it changes, is one SQLite transaction and one revision (WAL mode,
``synchronous=NORMAL``: a crash loses at most the last few commits, never
consistency, and never part of a write). Blocking SQLite calls run in a
worker thread (``anyio.to_thread``) behind one lock, so the event loop never
waits on the disk.

The change log is compacted to the last ``keep_changes`` entries; a watcher
asking for older history gets :class:`Compacted` and re-lists.
"""

from __future__ import annotations

import builtins  # the store has a method named `list`
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from ._api import Change, ChangeKind, Compacted, Key, PutResult, StoredResource

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    document TEXT NOT NULL, create_revision INTEGER NOT NULL, mod_revision INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS change_log (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL,
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, document TEXT,
    PRIMARY KEY (revision, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""

# A store written before change_log existed kept one change per revision in ``changes``.
_MIGRATE = """
BEGIN IMMEDIATE;
INSERT OR IGNORE INTO change_log
    SELECT revision, 0, op, kind, namespace, name, document FROM changes;
DROP TABLE changes;
COMMIT;
"""

Write = tuple[Key, "Mapping[str, Any] | None"]
"""One resource of a :meth:`SqliteStore.write`: its new document, or ``None`` to delete it."""


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


class SqliteStore:
    def __init__(self, path: str | Path, *, keep_changes: int = 10_000) -> None:
        self.path = Path(path)
        self.keep_changes = keep_changes
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
        old_log = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='changes'"
        if self._db.execute(old_log).fetchone():
            self._db.executescript(_MIGRATE)
        self._lock = threading.Lock()
        self._revision = self._read_revision()
        self._changed: anyio.Event | None = None  # made on first wait (needs a running loop)

    def _read_revision(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
        return int(row[0])

    @property
    def revision(self) -> int:
        return self._revision

    async def _run(self, fn: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(*args)

        return await anyio.to_thread.run_sync(locked)

    def _notify(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision
            changed, self._changed = self._changed, None
            if changed is not None:
                changed.set()

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: Key) -> StoredResource | None:
        row = await self._run(self._get, key)
        return None if row is None else _resource(key, row)

    def _get(self, key: Key) -> tuple[str, int, int] | None:
        row = self._db.execute(
            "SELECT document, create_revision, mod_revision FROM resources "
            "WHERE kind=? AND namespace=? AND name=?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    async def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> Sequence[StoredResource]:
        rows = await self._run(self._list, kind, namespace)
        return [_resource(Key(k, ns, n), (doc, c, m)) for k, ns, n, doc, c, m in rows]

    def _list(self, kind: str | None, namespace: str | None) -> builtins.list[tuple[Any, ...]]:
        sql = "SELECT kind, namespace, name, document, create_revision, mod_revision FROM resources"
        where, args = [], []
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        if namespace is not None:
            where.append("namespace=?")
            args.append(namespace)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._db.execute(sql + " ORDER BY kind, namespace, name", args).fetchall()

    async def changes_since(self, revision: int) -> Sequence[Change]:
        compacted_at, rows = await self._run(self._changes, revision)
        if compacted_at is not None:
            raise Compacted(revision, compacted_at)
        return [
            Change(
                revision=r,
                kind=ChangeKind(op),
                key=Key(k, ns, n),
                document=None if doc is None else json.loads(doc),
            )
            for r, op, k, ns, n, doc in rows
        ]

    def _changes(self, revision: int) -> tuple[int | None, builtins.list[tuple[Any, ...]]]:
        """``(oldest kept revision, [])`` if history after ``revision`` is gone, else the rows."""
        if revision >= self._read_revision():
            return None, []
        oldest = self._db.execute("SELECT MIN(revision) FROM change_log").fetchone()[0]
        if oldest is None or revision + 1 < oldest:
            return int(oldest or self._read_revision() + 1), []
        rows = self._db.execute(
            "SELECT revision, op, kind, namespace, name, document FROM change_log "
            "WHERE revision > ? ORDER BY revision, seq",
            (revision,),
        ).fetchall()
        return None, rows

    async def wait_for(self, revision: int) -> int:
        while self._revision <= revision:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self._revision

    # -- writes ------------------------------------------------------------------------------

    async def put(self, key: Key, document: Mapping[str, Any]) -> tuple[StoredResource, PutResult]:
        (result,) = await self.write([(key, document)])
        assert result is not None
        return result

    async def delete(self, key: Key) -> StoredResource | None:
        (result,) = await self.write([(key, None)])
        return None if result is None else result[0]

    async def write(
        self, writes: Sequence[Write]
    ) -> builtins.list[tuple[StoredResource, PutResult] | None]:
        """Put and delete several resources as one transaction and one revision: after a
        crash either all of them are stored or none. Per write, in order: ``(resource,
        result)`` for a put, ``(old resource, PutResult.CONFIGURED)`` for a delete that
        removed something, ``None`` for a delete of nothing. Unchanged puts and deletes of
        nothing take no revision (a write that changes nothing takes none at all)."""
        texts = [(key, None if doc is None else _dumps(doc)) for key, doc in writes]
        rows, revision = await self._run(self._write, texts)
        self._notify(revision)
        out: builtins.list[tuple[StoredResource, PutResult] | None] = []
        for (key, _), row in zip(texts, rows, strict=True):
            out.append(None if row is None else (_resource(key, row[0]), row[1]))
        return out

    def _write(
        self, writes: Sequence[tuple[Key, str | None]]
    ) -> tuple[builtins.list[tuple[tuple[str, int, int], PutResult] | None], int]:
        rows: builtins.list[tuple[tuple[str, int, int], PutResult] | None] = []
        rev = 0
        with self._db:  # one transaction: commits at the end, rolls back on any error
            self._db.execute("BEGIN IMMEDIATE")
            for seq, (key, text) in enumerate(writes):
                old = self._get(key)
                if text is None:
                    if old is None:
                        rows.append(None)
                        continue
                    rev = rev or self._bump()
                    self._db.execute(
                        "DELETE FROM resources WHERE kind=? AND namespace=? AND name=?",
                        (key.kind, key.namespace, key.name),
                    )
                    self._log(rev, seq, ChangeKind.DELETED, key, None)
                    rows.append((old, PutResult.CONFIGURED))
                    continue
                if old is not None and old[0] == text:
                    rows.append((old, PutResult.UNCHANGED))
                    continue
                rev = rev or self._bump()
                created = old[1] if old is not None else rev
                self._db.execute(
                    "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                    (key.kind, key.namespace, key.name, text, created, rev),
                )
                op = ChangeKind.UPDATED if old is not None else ChangeKind.CREATED
                self._log(rev, seq, op, key, text)
                result = PutResult.CONFIGURED if old is not None else PutResult.CREATED
                rows.append(((text, created, rev), result))
            if rev and rev % 100 == 0:  # compact now and then, not on every write
                self._db.execute(
                    "DELETE FROM change_log WHERE revision <= ?", (rev - self.keep_changes,)
                )
        return rows, rev

    def _bump(self) -> int:
        self._db.execute("UPDATE meta SET value = value + 1 WHERE key='revision'")
        return self._read_revision()

    def _log(self, rev: int, seq: int, op: ChangeKind, key: Key, text: str | None) -> None:
        self._db.execute(
            "INSERT INTO change_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rev, seq, op.value, key.kind, key.namespace, key.name, text),
        )

    async def aclose(self) -> None:
        await self._run(self._db.close)


def _resource(key: Key, row: tuple[str, int, int]) -> StoredResource:
    return StoredResource(
        key=key, document=json.loads(row[0]), create_revision=row[1], mod_revision=row[2]
    )
