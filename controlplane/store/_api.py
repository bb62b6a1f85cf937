"""The control plane's storage interface: resources with revisions, and watches.

Theory of operation: the store holds config resources (Kubernetes-style
documents) keyed by ``(kind, namespace, name)``. Every change (create, update,
delete, or one atomic write of several) gets the next value of one store-wide,
monotonically increasing **revision**, as etcd does (a transaction); a
resource remembers the revision that created it and the one that last
modified it. Watchers ask for "every change after
revision R" and are woken by revision, so a watcher that falls behind or
reconnects resumes exactly where it left off (or learns that history was
compacted and must re-list).

The interface is deliberately narrow (get, list, put, delete, an atomic write of
several puts and deletes, changes since, wait for a revision) so an etcd
backend can implement it without callers changing. Writes that change nothing
(same document) do not take a revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

__all__ = ["Change", "ChangeKind", "Compacted", "Key", "PutResult", "Store", "StoredResource"]


@dataclass(frozen=True, slots=True, order=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResource:
    key: Key
    document: Mapping[str, Any]
    """The whole resource as applied (apiVersion, kind, metadata, spec)."""
    create_revision: int
    mod_revision: int


class ChangeKind(Enum):
    CREATED = "created"
    UPDATED = "configured"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    revision: int
    kind: ChangeKind
    key: Key
    document: Mapping[str, Any] | None
    """The document after the change (``None`` for deletions)."""


class PutResult(Enum):
    """What ``plait apply`` prints for each resource."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


class Compacted(Exception):
    """The changes after the requested revision are no longer kept: re-list."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} is compacted; the oldest kept is {oldest}")
        self.requested = requested
        self.oldest = oldest


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The revision of the latest change (0 for an empty store)."""

    async def get(self, key: Key) -> StoredResource | None: ...

    async def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> Sequence[StoredResource]:
        """Resources sorted by key; filters are optional."""

    async def put(self, key: Key, document: Mapping[str, Any]) -> tuple[StoredResource, PutResult]:
        """Create or replace. An identical document changes nothing and takes no revision."""

    async def delete(self, key: Key) -> StoredResource | None:
        """The deleted resource, or ``None`` if there was none (no revision taken)."""

    async def write(
        self, writes: Sequence[tuple[Key, Mapping[str, Any] | None]]
    ) -> Sequence[tuple[StoredResource, PutResult] | None]:
        """Puts (a document) and deletes (``None``) as one atomic change with one revision:
        a crash leaves all of them stored or none. Per write: ``(resource, result)`` for a
        put, ``(old resource, CONFIGURED)`` for a delete that removed something, ``None``
        for a delete of nothing."""

    async def changes_since(self, revision: int) -> Sequence[Change]:
        """Every change with a revision greater than ``revision``, in order.

        Raises:
            Compacted: changes after ``revision`` were discarded; re-list instead.
        """

    async def wait_for(self, revision: int) -> int:
        """Wait until the store's revision is greater than ``revision``; return it."""

    async def aclose(self) -> None: ...
