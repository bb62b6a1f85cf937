"""The SQLite store: revisions, idempotent puts, persistence, watches, compaction."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from plait.controlplane.store import ChangeKind, Compacted, Key, PutResult, SqliteStore

pytestmark = pytest.mark.anyio


def doc(name: str, weight: int = 1) -> dict[str, object]:
    return {"kind": "Service", "metadata": {"name": name}, "spec": {"weight": weight}}


KEY = Key("Service", "default", "echo")


async def test_revisions_increase_and_unchanged_puts_take_none(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")
    assert store.revision == 0
    res, result = await store.put(KEY, doc("echo"))
    assert (result, res.create_revision, res.mod_revision, store.revision) == (
        PutResult.CREATED, 1, 1, 1)  # fmt: skip
    res, result = await store.put(KEY, doc("echo"))
    assert result is PutResult.UNCHANGED and store.revision == 1
    res, result = await store.put(KEY, doc("echo", weight=2))
    assert (result, res.create_revision, res.mod_revision) == (PutResult.CONFIGURED, 1, 2)
    assert await store.delete(Key("Service", "default", "absent")) is None
    assert store.revision == 2
    deleted = await store.delete(KEY)
    assert deleted is not None and deleted.document == doc("echo", weight=2)
    assert store.revision == 3 and await store.get(KEY) is None
    await store.aclose()


async def test_state_and_revision_survive_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")
    await store.put(KEY, doc("echo"))
    await store.put(Key("Service", "shop", "cart"), doc("cart"))
    await store.delete(KEY)
    await store.aclose()
    again = SqliteStore(tmp_path / "plait.db")
    assert again.revision == 3  # never goes backwards, even though the last change was a delete
    listed = await again.list()
    assert [str(r.key) for r in listed] == ["Service/shop/cart"]
    res, _ = await again.put(KEY, doc("echo"))
    assert res.create_revision == 4
    await again.aclose()


async def test_list_filters_and_sorts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")
    for kind, ns, name in [("Service", "b", "x"), ("HTTPRoute", "a", "r"), ("Service", "a", "y")]:
        await store.put(Key(kind, ns, name), doc(name))
    assert [str(r.key) for r in await store.list()] == [
        "HTTPRoute/a/r", "Service/a/y", "Service/b/x"]  # fmt: skip
    assert [str(r.key) for r in await store.list(kind="Service", namespace="a")] == ["Service/a/y"]
    await store.aclose()


async def test_watchers_resume_from_a_revision(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")
    await store.put(KEY, doc("echo"))
    seen: list[tuple[int, ChangeKind]] = []

    async def watcher() -> None:
        revision = 1
        while len(seen) < 3:
            await store.wait_for(revision)
            for change in await store.changes_since(revision):
                seen.append((change.revision, change.kind))
                revision = change.revision

    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher)
        await anyio.sleep(0.01)
        await store.put(KEY, doc("echo", 2))
        await store.put(Key("Service", "default", "other"), doc("other"))
        await store.delete(KEY)
    assert seen == [(2, ChangeKind.UPDATED), (3, ChangeKind.CREATED), (4, ChangeKind.DELETED)]
    assert await store.changes_since(4) == []
    await store.aclose()


async def test_compacted_history_asks_for_a_relist(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db", keep_changes=50)
    for i in range(250):
        await store.put(KEY, doc("echo", i))
    with pytest.raises(Compacted) as err:
        await store.changes_since(10)
    assert err.value.oldest > 11
    recent = await store.changes_since(240)
    assert [c.revision for c in recent] == list(range(241, 251))
    await store.aclose()


async def test_concurrent_writers_get_distinct_ordered_revisions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")

    async def writer(n: int) -> None:
        for i in range(20):
            await store.put(Key("Service", "default", f"s{n}"), doc(f"s{n}", i))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(writer, n)
    changes = await store.changes_since(0)
    assert [c.revision for c in changes] == list(range(1, 101))
    latest = {str(r.key): r.mod_revision for r in await store.list()}
    assert max(latest.values()) == 100 and store.revision == 100
    await store.aclose()


async def test_a_write_of_several_is_one_revision_and_one_change(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plait.db")
    await store.put(KEY, doc("echo"))
    other = Key("Service", "default", "other")
    out = await store.write([(other, doc("other")), (KEY, None), (Key("Service", "x", "y"), None)])
    assert store.revision == 2
    assert out[0] is not None and out[0][1] is PutResult.CREATED and out[0][0].mod_revision == 2
    assert out[1] is not None and out[1][0].key == KEY
    assert out[2] is None
    changes = await store.changes_since(1)
    assert [(c.revision, c.kind, c.key) for c in changes] == [
        (2, ChangeKind.CREATED, other),
        (2, ChangeKind.DELETED, KEY),
    ]
    (again,) = await store.write([(other, doc("other"))])
    assert again is not None and again[1] is PutResult.UNCHANGED
    assert store.revision == 2  # an unchanged write takes no revision
    await store.aclose()


async def test_a_store_with_the_older_change_log_is_carried_over(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "plait.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE changes (revision INTEGER PRIMARY KEY, op TEXT NOT NULL, kind TEXT NOT NULL,"
        " namespace TEXT NOT NULL, name TEXT NOT NULL, document TEXT);"
        "INSERT INTO changes VALUES (1, 'created', 'Service', 'default', 'echo', '{}');"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES ('revision', 1);"
    )
    db.close()
    store = SqliteStore(path)
    assert store.revision == 1
    (change,) = await store.changes_since(0)
    assert change.key == KEY and change.kind is ChangeKind.CREATED
    await store.put(Key("Service", "default", "b"), doc("b"))
    assert [c.revision for c in await store.changes_since(0)] == [1, 2]
    await store.aclose()
