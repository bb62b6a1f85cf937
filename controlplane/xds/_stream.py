"""One ADS stream: the reader, the change watcher and the single path that writes responses.

Theory of operation. grpc.aio runs each RPC's handler in its own task; the handler
(:meth:`StreamHandler.run`) owns everything the stream does:

1. It reads the first request; without a ``node`` (with an ``id``) the stream fails with
   ``INVALID_ARGUMENT``. The server's :class:`NodeAuthorizer`, if it has one, then decides
   whether the peer (its verified client certificate, or the plaintext port) may be that
   node; a refusal ends the stream with ``PERMISSION_DENIED`` and the authorizer's reason
   before anything is served or reported. Otherwise the observer hears ``connected``, and
   ``disconnected`` in a ``finally`` however the stream ends (client gone, error, server
   stop).
2. A task group runs two tasks until the client half-closes or the RPC is cancelled:
   the reader (requests → machine → observer, and an answer when the outcome calls for one)
   and the watcher (each published control-plane revision → recompute every subscribed type
   in push order, send the types whose content changed).
3. Both tasks send through :meth:`StreamHandler._send`, which holds the stream's lock from
   computing the response (which records its nonce as the latest) until it is written, so
   responses leave in the order their nonces were issued and the machine is never touched by
   two tasks at once.

The watcher's starting revision is taken *before* the first response is computed, so a change
published while the stream starts is never missed (at worst it is recomputed, finds the same
content hash, and sends nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import grpc

from plait.core.xds.wire import CLUSTER, ENDPOINT

from ._machine import Machine, Outcome
from ._peer import peer_of
from ._source import (
    Flavor,
    Message,
    NodeAuthorizer,
    NodeInfo,
    StreamInfo,
    XdsObserver,
    XdsSource,
)

logger = logging.getLogger("plait.controlplane.xds")


class Changes:
    """The debounced control-plane revision, published by the server to every stream."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self._event = anyio.Event()

    def publish(self, revision: int) -> None:
        """Make ``revision`` current and wake every waiter."""
        self.revision = revision
        self._event.set()
        self._event = anyio.Event()

    async def wait_past(self, revision: int) -> int:
        """Block until a revision newer than ``revision`` is published; return it."""
        while self.revision <= revision:
            await self._event.wait()
        return self.revision


class StreamHandler:
    """Runs one ADS stream (SotW or Delta, by its machine); see the module docstring."""

    def __init__(
        self,
        *,
        stream_id: int,
        flavor: Flavor,
        machine: Machine,
        context: Any,  # grpc.aio.ServicerContext
        source: XdsSource,
        observer: XdsObserver,
        changes: Changes,
        authorizer: NodeAuthorizer | None = None,
    ) -> None:
        self._id = stream_id
        self._flavor: Flavor = flavor
        self._machine = machine
        self._context = context
        self._source = source
        self._observer = observer
        self._changes = changes
        self._authorizer = authorizer
        self._lock = anyio.Lock()
        self._node: NodeInfo | None = None

    async def run(self) -> None:
        """Serve the stream until the client half-closes or the RPC ends."""
        seen = self._changes.revision
        first = await self._context.read()
        if first is grpc.aio.EOF:
            return
        if not first.HasField("node") or not first.node.id:
            logger.warning("xds stream %d from %s: no node", self._id, self._context.peer())
            await self._context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first request of an ADS stream must carry node, with node.id set",
            )
        self._node = NodeInfo.from_proto(first.node)
        peer = peer_of(self._context)
        if self._authorizer is not None:
            refusal = self._authorizer.authorize(self._node, peer)
            if refusal is not None:
                logger.warning("xds stream %d from %s (%s): node %s refused: %s", self._id,
                               self._context.peer(), peer.describe(), self._node.id,
                               refusal)  # fmt: skip
                await self._context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        info = StreamInfo(
            stream_id=self._id,
            node=self._node,
            peer=self._context.peer(),
            flavor=self._flavor,
            connected_at=time.time(),
            identity=peer.spiffe_id,
        )
        logger.info("xds stream %d: %s connected from %s (%s; %s)",
                    self._id, self._node.id, info.peer, self._flavor,
                    peer.describe())  # fmt: skip
        self._notify(self._observer.connected, info)
        try:
            await self._handle(info, first)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, seen)
                await self._read(info)
                tg.cancel_scope.cancel()
        finally:
            logger.info("xds stream %d: %s disconnected", self._id, self._node.id)
            self._notify(self._observer.disconnected, info)

    async def _read(self, info: StreamInfo) -> None:
        while True:
            request = await self._context.read()
            if request is grpc.aio.EOF:
                return
            await self._handle(info, request)

    async def _handle(self, info: StreamInfo, request: Message) -> None:
        outcome = self._machine.on_request(request)
        self._report(info, outcome)
        if outcome.respond:
            await self._send(outcome.type_url, force=outcome.force)
        if outcome.recheck:  # a cluster kept for routes the client no longer runs may go
            for type_url in self._machine.subscribed():
                if type_url in (CLUSTER, ENDPOINT):
                    await self._send(type_url, force=False)

    def _report(self, info: StreamInfo, outcome: Outcome) -> None:
        t = outcome.type_url
        if outcome.ignored:
            logger.warning("xds stream %d: unsupported type %s ignored", self._id, t)
        elif outcome.stale:
            logger.debug("xds stream %d: stale nonce for %s", self._id, t)
        if outcome.acked is not None:
            self._notify(self._observer.acked, info, t, outcome.acked)
        if outcome.nacked is not None:
            version, message = outcome.nacked
            logger.warning("xds stream %d: %s NACKed %s version %s: %s",
                           self._id, info.node.id, t, version, message)  # fmt: skip
            self._notify(self._observer.nacked, info, t, version, message)

    async def _watch(self, seen: int) -> None:
        while True:
            seen = await self._changes.wait_past(seen)
            for type_url in self._machine.subscribed():
                await self._send(type_url, force=False)

    async def _send(self, type_url: str, *, force: bool) -> None:
        async with self._lock:
            try:
                response = self._machine.response(type_url, self._fetch, force=force)
            except Exception:
                # A source failing for one node must not end the stream: the client keeps
                # its last good config and the next revision tries again.
                logger.exception("xds stream %d: computing %s failed", self._id, type_url)
                return
            if response is not None:
                await self._context.write(response)

    def _fetch(self, type_url: str, names: frozenset[str] | None) -> Mapping[str, Message]:
        assert self._node is not None
        return self._source.resources(self._node, type_url, names)

    def _notify(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            logger.exception("xds stream %d: observer %s failed", self._id, method.__name__)
