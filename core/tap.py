"""Tap: a live stream of request metadata to whoever is watching a sidecar.

Theory of operation: the runtime keeps one list of :class:`Tap` watchers
(``Runtime.taps``), shared by every listener of every snapshot. When a request
ends, ``ListenerRuntime.record`` checks that list; empty (nobody taps) is the
only cost on the request path. Otherwise :func:`publish` builds the request's
metadata once (method, authority, path, status, duration, direction, peer
identity, failure reason) and offers it to each watcher, whose filters (path
prefix, status code or class) pick what it wants.

Each watcher has a bounded queue: a watcher that reads slower than requests end
(a slow client, a full socket) loses records instead of growing memory, and
counts what it lost; the admin endpoint (``GET /tap``) reports the count in the
stream as ``{"dropped": N}`` lines. A watcher leaves the list when its client
disconnects or its ``max`` is reached, so a sidecar nobody taps is back to the
single empty-list check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from plait.sdk import StreamContext

__all__ = ["QUEUE", "Tap", "TapFilter", "publish"]

QUEUE = 1000
"""Records a watcher may have waiting; more are dropped (and counted)."""

Record = dict[str, Any]


class TapFilter:
    """What one watcher wants: a path prefix, a status (``503``) or class (``5xx``)."""

    def __init__(self, path: str = "", status: str = "") -> None:
        status = status.strip().lower()
        if status and not (
            (len(status) == 3 and status.isdigit())
            or (len(status) == 3 and status[0] in "012345" and status[1:] == "xx")
        ):
            raise ValueError(f"status filter {status!r}: expected a code (503) or a class (5xx)")
        self.path = path
        self.status = status

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TapFilter:
        return cls(query.get("path", ""), query.get("status", ""))

    def wants(self, record: Record) -> bool:
        if self.path and not str(record["path"] or "").startswith(self.path):
            return False
        if self.status:
            code = f"{record['status']:03d}"
            return code == self.status or (self.status[1:] == "xx" and code[0] == self.status[0])
        return True


class Tap:
    """One watcher: its filter, its bounded queue and how many records it lost."""

    def __init__(self, filter: TapFilter, queue: int = QUEUE) -> None:
        self.filter = filter
        self.dropped = 0
        self._send: MemoryObjectSendStream[Record]
        self.receive: MemoryObjectReceiveStream[Record]
        self._send, self.receive = anyio.create_memory_object_stream[Record](queue)

    def offer(self, record: Record) -> None:
        if not self.filter.wants(record):
            return
        try:
            self._send.send_nowait(record)
        except anyio.WouldBlock:
            self.dropped += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def close(self) -> None:
        self._send.close()
        self.receive.close()


def publish(taps: list[Tap], ctx: StreamContext, listener: str, inbound: bool,
            seconds: float) -> None:  # fmt: skip
    """Offer one finished request to every watcher (called only when ``taps`` is not empty)."""
    req, resp = ctx.request, ctx.response
    peer = ctx.connection.peer_identity
    record: Record = {
        "time": round(time.time(), 3),
        "listener": listener,
        "direction": "inbound" if inbound else "outbound",
        "method": req.method,
        "authority": req.authority,
        "path": req.path,
        "status": resp.status if resp is not None else 0,
        "duration_ms": round(seconds * 1000, 3) if math.isfinite(seconds) else None,
        "peer_identity": peer.spiffe_id if peer is not None else None,
        "route": ctx.route_name,
        "upstream": ctx.upstream_address,
        "failure_reason": ctx.failure_reason,
    }
    for tap in tuple(taps):
        tap.offer(record)
