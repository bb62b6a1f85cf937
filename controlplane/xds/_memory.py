"""An in-memory :class:`XdsSource`: the same resources for every node.

For tests, benchmarks and static setups. Resources are replaced wholesale per type with
:meth:`MemorySource.set`, which bumps the revision and wakes :meth:`wait_for` waiters only if
something changed. Resources handed in are never mutated afterwards (the source contract), so
callers build new messages for new content.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from ._source import Message, NodeInfo


class MemorySource:
    """A revisioned map ``type_url → name → resource``, node-agnostic."""

    def __init__(self) -> None:
        self._revision = 0
        self._resources: dict[str, dict[str, Message]] = {}
        self._changed: anyio.Event | None = None

    @property
    def revision(self) -> int:
        return self._revision

    def set(self, type_url: str, resources: Mapping[str, Message]) -> None:
        """Replace every resource of ``type_url``; bump the revision if anything differs."""
        if self._resources.get(type_url, {}) == resources:
            return
        self._resources[type_url] = dict(resources)
        self.bump()

    def bump(self) -> None:
        """Bump the revision (also without a change: a source may do so spuriously)."""
        self._revision += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, revision: int) -> int:
        while self._revision <= revision:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self._revision

    def resources(
        self, node: NodeInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Message]:
        everything = self._resources.get(type_url, {})
        if names is None:
            return everything
        return {name: everything[name] for name in names if name in everything}
