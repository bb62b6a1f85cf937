"""Concurrency limits of one cluster: active requests, a bounded pending queue, overflow.

Theory of operation: ``maxRequests`` bounds requests in flight to the cluster;
past it a request overflows at once. ``maxConnections`` bounds them too, but
as a connection-pool limit (an HTTP/1.1 connection carries one request at a
time): past it a request waits as *pending*, in arrival order, for a slot, and
past ``maxPendingRequests`` waiting requests it overflows at once (Envoy's
``max_pending_requests``). A released slot is handed straight to the oldest
waiter, so the count of requests in flight never exceeds the limit; a waiter
cancelled after it was handed a slot passes it on.
"""

from __future__ import annotations

from collections import deque

import anyio

from plait.sdk import UpstreamError

from ._config import BreakerConfig

__all__ = ["Limits", "Overflow"]


class Overflow(UpstreamError):
    """A circuit-breaker limit refused the request (Envoy's ``UO`` flag)."""

    status_hint = 503
    reason = "overflow"


class Limits:
    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: deque[anyio.Event] = deque()

    def try_acquire(self, config: BreakerConfig) -> bool:
        """Take a free slot without waiting (the common case); ``False`` if there is none."""
        active = self.active
        if active < config.max_connections and active < config.max_requests and not self.waiters:
            self.active = active + 1
            return True
        return False

    def enqueue(self, config: BreakerConfig) -> anyio.Event:
        """No slot is free: join the pending queue (wait on the event with :meth:`wait`);
        raises :class:`Overflow` when the limits allow no waiting."""
        if self.active >= config.max_requests:
            raise Overflow(f"{self.active} requests in flight (maxRequests {config.max_requests})")
        if len(self.waiters) >= config.max_pending_requests:
            raise Overflow(
                f"{len(self.waiters)} requests pending (maxPendingRequests "
                f"{config.max_pending_requests})"
            )
        event = anyio.Event()
        self.waiters.append(event)
        return event

    async def wait(self, event: anyio.Event) -> None:
        """Wait until a released slot is handed to ``event`` (see :meth:`enqueue`)."""
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # we were handed a slot: pass it on
            else:
                self.waiters.remove(event)
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest pending request, else to the pool."""
        if self.waiters:
            self.waiters.popleft().set()  # the slot changes hands; ``active`` stays
            return
        self.active -= 1

    def describe(self) -> dict[str, int]:
        return {"active": self.active, "pending": len(self.waiters)}
