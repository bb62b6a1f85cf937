"""HTTP/1.1 requests answered in callbacks: no task switch in the common case.

Theory of operation
-------------------
:meth:`H1Connection.data_received` offers each whole request to :func:`try_inline`
when the connection is idle (no request in flight, no events queued). If the
runtime is not draining and the matched rule's chain is ``chain.inline`` with no
request/backendRequest timeout on the rule or the listener, the request is
answered with the :class:`~plait.core.exchange._Exchange` step methods as plain
calls: request hooks, the ``around_upstream`` layers' first halves
(:class:`~plait.core._layers.LayerPass`, when the chain has layers: all of them
have the sync fast pair), endpoint pick, ``pool.take()`` of a warm HTTP/1.1
connection, send. :meth:`Inline.on_upstream` is then that connection's
``watcher``: the upstream ``data_received`` that completes the response (a small
body with a content-length may follow its head in a few reads; the events stay
queued until the last) runs the layers' second halves (:meth:`Inline.tried`),
the response hooks, writes downstream, returns the connection to its pool and
does the bookkeeping (:meth:`_Exchange.finish`).
No task, no future.

Anything else is *promoted*: a task (``listener.tg.start_soon``) continues on
the same ``_Exchange`` with the async code from the step reached: no warm
connection (``_attempt``), an HTTP/2 upstream (``_send``); a 1xx, a response
without a content-length ≤ ``_MAX_WHOLE`` that is not whole in one read (its
head goes out at once), a reset or EOF before the response incl. the stale
keep-alive retry (``_send(sent=True)`` reads the events still queued). With
layers, the task also finishes their pass (:meth:`Inline._layered`): the try's
outcome through their second halves, and any layer whose async code must act on
it (a retry, or one that asked ``RUN_ASYNC``) run there. Requests
that do not qualify before the match step go to the ``serve`` task, unchanged.

Invariants
----------
* Order: while an inline or promoted exchange is in flight (``conn._inline_ex``),
  new events are queued and ``serve`` does not take any (``H1Connection.next_event``
  holds); when the exchange ends, ``serve`` is woken if events are queued.
* ``_Exchange.finish`` (on_stream_complete, stats, ``stream_ended``) runs exactly
  once per stream, in :meth:`Inline.end`: after the response, after a local
  reply, when the client leaves while we wait for the upstream
  (:meth:`Inline.cancel`: the upstream stream is reset), and at the end of a
  promoted task (its ``finally``, also when cancelled).
* ``H1Connection.in_flight`` is true from :func:`try_inline` to :meth:`Inline.end`,
  so the idle timer and ``Listener.drain`` see the exchange.
* Every layer entered is left exactly once (core/_layers.py); :meth:`Inline.end`
  abandons what is still entered (the client left while we waited).
* Tasks are only started with ``start_soon`` in the listener's task group.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from plait.sdk import StreamContext, UpstreamRequest, UpstreamResponse

from ._exchange_base import DEADLINE_HEADER
from ._layers import LayerPass
from .codec import DataReceived, Event, RequestReceived, ResponseReceived
from .exchange import _Exchange
from .upstream._h1 import H1Stream

if TYPE_CHECKING:
    from .chain import Chain
    from .config import RouteRule
    from .runtime import ListenerRuntime
    from .server._h1 import H1Connection
    from .upstream._manager import Pool

__all__ = ["Inline", "try_inline"]

log = logging.getLogger(__name__)

_MAX_PARTS: Final = 16  # queued events of one response before it streams in a task instead
_MAX_WHOLE: Final = 64 * 1024  # larger bodies, and bodies without a length, stream in a task

# in a plain call (no watcher) | waiting (the upstream's watcher) | in a task | ended
_BUSY: Final = 0
_WAITING: Final = 1
_PROMOTED: Final = 2
_DONE: Final = 3
_DEADLINE: Final = DEADLINE_HEADER.encode()


def try_inline(conn: H1Connection, ev: RequestReceived) -> bool:
    """Answer the whole request ``ev`` inline; ``False`` (nothing done) if it does not qualify."""
    listener = conn.listener
    runtime = listener.runtime
    if runtime.draining:
        return False
    lrt = runtime.listener(listener.name)
    if lrt is None or not lrt.inline_possible:  # decided once per snapshot
        return False
    rule = lrt.router.match(ev.head)
    if rule is None or rule.timeouts.request or rule.timeouts.backend_request:
        return False
    if ev.head.headers.get_raw(_DEADLINE) is not None:  # the caller's deadline applies
        return False
    chain = lrt.chain_for(rule)
    if not chain.inline:
        return False
    Inline(conn, lrt, ev, rule).start(ev, chain)
    return True


def _whole(events: deque[Event]) -> ResponseReceived | bool:
    """The whole response, consumed from ``events``, if they hold exactly a response
    head and its body (a small one with a length may come in a few reads). Else
    nothing is consumed; the answer is whether more events can still make it whole."""
    if not events:
        return True
    if type(first := events[0]) is not ResponseReceived:
        return False
    if first.end_stream:
        events.popleft()
        return first
    length = first.head.headers.get_raw(b"content-length")
    if length is None or not length.isdigit() or int(length) > _MAX_WHOLE:
        return False  # streamed, or large: its head goes out now, through a task
    parts = [first.body]
    for i in range(1, len(events)):
        ev = events[i]
        if type(ev) is not DataReceived:
            return False
        parts.append(ev.data)
        if ev.end_stream:
            for _ in range(i + 1):
                events.popleft()
            return ResponseReceived(first.stream_id, first.head, True, b"".join(parts))
    return len(events) < _MAX_PARTS


class Inline:
    """One exchange driven by callbacks, until it ends or is promoted to a task."""

    __slots__ = (
        "cancelled",
        "conn",
        "ex",
        "layers",
        "pool",
        "request",
        "scope",
        "state",
        "stream",
    )

    def __init__(
        self,
        conn: H1Connection,
        lrt: ListenerRuntime,
        ev: RequestReceived,
        rule: RouteRule,
    ) -> None:
        ctx = StreamContext(
            connection=conn.conn_ctx,
            request=ev.head,
            stream_id=ev.stream_id,
            snapshot_version=lrt.snapshot.version,
        )
        ctx.route_name = rule.name
        self.conn = conn
        self.ex = ex = _Exchange(lrt, conn, ctx)
        ex.rule_timeouts = rule.timeouts
        self.state = _BUSY
        self.stream: H1Stream | None = None
        self.pool: Pool | None = None
        self.request: UpstreamRequest | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.layers: LayerPass | None = None

    def start(self, ev: RequestReceived, chain: Chain) -> None:
        ex = self.ex
        self.conn.begin_inline(self, ev)
        ex.lrt.runtime.stream_started()
        try:
            ex.run_ = run = chain.start(ex.ctx)
            request = ex.request_now(ev, run)
            if request is None:
                self.end()
                return
            if chain.layers:
                ex.ctx.upstream_cluster = ex.cluster_state()
                self.layers = layers = LayerPass(run, request)
                if not layers.enter():
                    self.promote(None)
                    return
                try:
                    pool = ex.pool_for(request)
                except Exception as exc:
                    self.tried(None, exc)
                    return
            else:
                pool = ex.pool_for(request)
            self.send(pool, request)
        except Exception as exc:
            ex.failed(exc)
            self.end()

    def send(self, pool: Pool, request: UpstreamRequest) -> None:
        """The try: on a warm HTTP/1.1 connection, sent now and watched; else in a task."""
        stream = pool.take()
        if stream is None:
            self.promote(self.ex._attempt, pool, request)
        elif type(stream) is not H1Stream:
            self.promote(self.ex._send, pool, stream, request)
        else:
            self.ex.write_now(stream, request)
            self.pool, self.stream, self.request = pool, stream, request
            self.state = _WAITING
            stream.watch(self.on_upstream)

    def tried(self, response: UpstreamResponse | None, error: Exception | None) -> None:
        """The try's outcome, in a callback: through the layers' second halves, then
        answered here, unless a layer's async code must act on it (a retry)."""
        layers, ex = self.layers, self.ex
        if layers is not None:
            if not layers.leave(response, error):
                self.promote(None)
                return
            response, error = layers.response, layers.error
        try:
            if error is not None:
                raise error
            assert response is not None and ex.run_ is not None
            ex.respond_now(ex.run_, response)  # whole: always written here
        except Exception as exc:
            ex.failed(exc)
        self.end()

    # -- callbacks ------------------------------------------------------------------------

    def on_upstream(self) -> None:
        """The upstream connection got events or closed (its ``watcher``)."""
        stream, ex = self.stream, self.ex
        assert stream is not None and self.pool is not None and self.request is not None
        ev = _whole(stream.events)
        if ev is True and not stream.conn.closed:
            return  # the response is still arriving (its events stay queued)
        stream.watch(None)
        self.state = _BUSY
        if isinstance(ev, ResponseReceived):
            try:
                response = ex.received(stream, ev)
            except Exception as exc:
                self.tried(None, exc)
                return
            self.tried(response, None)
            return
        # 1xx, streamed, reset/EOF (maybe a stale keep-alive): the async code reads the queue
        self.promote(self._resume, self.pool, stream, self.request)

    async def _resume(
        self, pool: Pool, stream: H1Stream, request: UpstreamRequest
    ) -> UpstreamResponse:
        return await self.ex._send(pool, stream, request, sent=True)

    def cancel(self) -> None:
        """The client left (downstream ``connection_lost``), or the drain aborted it."""
        if self.state == _WAITING:
            self.ex.cancelled()
            self.end()  # finish() resets the upstream stream
        elif self.state == _PROMOTED:
            self.cancelled = True
            if self.scope is not None:
                self.scope.cancel()

    def end(self) -> None:
        if self.state == _DONE:
            return
        if self.state == _WAITING and self.stream is not None:
            # only while waiting: once promoted, the connection may be back in its
            # pool and watched by another exchange
            self.stream.watch(None)
        self.state = _DONE
        if self.layers is not None:
            self.layers.abandon()  # (nothing left to do unless the pass was cut short)
        self.ex.finish()
        self.conn.end_inline(self)

    # -- promotion ------------------------------------------------------------------------

    def promote(self, step: Callable[..., Awaitable[Any]] | None, *args: Any) -> None:
        """Continue in a task from ``step(*args)``; with layers, their pass goes on
        there too (``step`` ``None``: only the pending layers are left to run)."""
        self.state = _PROMOTED
        log.debug("stream %s: continues in a task (%s)", self.ex.ctx.stream_id, step)
        if self.layers is not None:
            step, args = self._layered, (step, args)
        assert step is not None
        self.conn.listener.tg.start_soon(self._promoted, step, args)

    async def _layered(
        self, step: Callable[..., Awaitable[UpstreamResponse]] | None, args: tuple[Any, ...]
    ) -> UpstreamResponse:
        layers = self.layers
        assert layers is not None
        if step is None:  # the try's outcome is in already: only pending layers are left
            return await layers.finish(self.ex.terminal)
        return await layers.resume(step(*args), self.ex.terminal)

    async def _promoted(self, step: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        ex = self.ex
        run = ex.run_
        assert run is not None
        try:
            if not self.cancelled:
                with anyio.CancelScope() as self.scope:
                    try:
                        response = await step(*args)
                        if isinstance(response, UpstreamResponse):
                            await ex.fast_respond(run, response)
                    except Exception as exc:
                        ex.failed(exc)
            if self.cancelled:  # the client left (cancel())
                ex.cancelled()
        except BaseException:  # cancelled from outside (the listener's task group)
            ex.cancelled()
            raise
        finally:
            self.scope = None
            self.end()
