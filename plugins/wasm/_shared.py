"""Shared data and shared queues: one store per sidecar process, for every wasm filter.

Shared data (``proxy_get/set_shared_data``) is one key-value store for every
instance of every wasm plugin in the process (Envoy keeps one per VM id across
its worker threads; a plait process is one worker, and ``--workers`` processes
do not share it). Each key has a version (its CAS), 1 when first set and one
more at every set; a set with a CAS other than 0 that is not the key's current
version is ``CAS_MISMATCH`` and changes nothing. Keys are never removed.

Shared queues are named per VM id (``register(vm_id, name)``, ``resolve(vm_id,
name)``): registering gives the queue to the registering instance (the one whose
root context gets ``proxy_on_queue_ready``), and an instance may register a name
again (a replaced instance takes its queue over). Every instance in the process
may enqueue to a queue it resolved; dequeue takes the oldest item (``EMPTY``
when none). A queue holds at most :data:`MAX_ITEMS` items (an enqueue past it is
``INTERNAL_FAILURE``).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Final

from ._abi import Status

__all__ = ["DATA", "QUEUES", "SharedData", "SharedQueues"]

MAX_ITEMS: Final = 10_000


class SharedData:
    def __init__(self) -> None:
        self._items: dict[bytes, tuple[bytes, int]] = {}

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        return self._items.get(key)

    def set(self, key: bytes, value: bytes, cas: int) -> int:
        current = self._items.get(key)
        version = current[1] if current is not None else 0
        if cas and cas != version:
            return Status.CAS_MISMATCH
        self._items[key] = (value, (version + 1) & 0xFFFFFFFF or 1)
        return Status.OK


Notify = Callable[[int], None]


class SharedQueues:
    def __init__(self) -> None:
        self._ids: dict[tuple[bytes, bytes], int] = {}
        self._items: dict[int, deque[bytes]] = {}
        self._owners: dict[int, weakref.WeakMethod[Notify] | Callable[[], Notify | None]] = {}

    def register(self, vm_id: bytes, name: bytes, notify: Notify) -> int:
        key = (vm_id, name)
        queue_id = self._ids.get(key)
        if queue_id is None:
            queue_id = self._ids[key] = len(self._ids) + 1
            self._items[queue_id] = deque()
        try:
            self._owners[queue_id] = weakref.WeakMethod(notify)
        except TypeError:
            self._owners[queue_id] = lambda: notify
        return queue_id

    def resolve(self, vm_id: bytes, name: bytes) -> int | None:
        return self._ids.get((vm_id, name))

    def enqueue(self, queue_id: int, value: bytes) -> int:
        items = self._items.get(queue_id)
        if items is None:
            return Status.NOT_FOUND
        if len(items) >= MAX_ITEMS:
            return Status.INTERNAL_FAILURE
        items.append(value)
        owner = self._owners.get(queue_id)
        notify = owner() if owner is not None else None
        if notify is not None:
            notify(queue_id)
        return Status.OK

    def dequeue(self, queue_id: int) -> bytes | int:
        items = self._items.get(queue_id)
        if items is None:
            return Status.NOT_FOUND
        if not items:
            return Status.EMPTY
        return items.popleft()


DATA: Final = SharedData()
QUEUES: Final = SharedQueues()
