"""The driver of the exchange machine: in a task, or from protocol callbacks.

Theory of operation
-------------------
:func:`serve` runs one stream in the calling task (HTTP/2 stream workers, the
HTTP/1.1 request loop): :meth:`Exchange.begin`, then the machine's actions
performed one by one (``actions.drive``) inside the request's deadline (a cancel
scope: past it the machine is closed and the client gets 504) and, for a
request whose body streams, a task group owning the body pump.

:class:`Inline` drives the same machine from callbacks, for a whole request: one
on an idle HTTP/1.1 connection (``H1Connection.data_received``), or an HTTP/2
stream whose request ended in the read that brought its HEADERS, with any body
small and whole (``H2Connection``); the machine runs in the callback until its
first action. :meth:`Inline.step` is the one place that decides what may wait
without a task: a :class:`~.actions.WaitHead` on a pooled upstream stream
(HTTP/1.1 or HTTP/2). It is served by watching that stream: the upstream
connection's ``data_received`` sends the whole response back into the machine
(a small body with a length may come in a few reads, the events staying queued
until the last; one without a length, a gRPC response with its trailers, must
have ended in the reads that brought its head), which answers the client in that
callback. A deadline of the try or of the request arms a loop timer; when it
fires first, the wait goes to a task. Any other action (an async hook, a
connect, a backoff, a streamed or 1xx response, a reset, a deadline) *hands the
machine over* to a task in the listener's task group, which performs that action
and drives the rest exactly as :func:`serve` does, within what is left of the
request's deadline.

Invariants
----------
* :meth:`Exchange.finish` runs exactly once per stream: at the end of the
  machine, when the client leaves while a callback waits (:meth:`Inline.cancel`
  closes the machine, so its layers are left), or at the end of the task.
* While an inline exchange (or the task it was handed to) is in flight on an
  HTTP/1.1 connection, its request loop takes no new request.
* The host (:class:`~.streams.InlineHost`) hears :meth:`end_inline` once, and calls
  :meth:`Inline.cancel` when the client leaves.
* Tasks are only started with ``start_soon`` in the listener's task group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import LocalReply

from ..codec import RequestReceived, ResponseReceived
from ..upstream._h1 import H1Stream
from ..upstream._h2 import H2Stream
from .actions import DONE, NONE, Steps, WaitHead, close_action, drive
from .gather import whole_response
from .machine import Exchange
from .replies import ALL, answer
from .streams import Downstream, InlineHost

if TYPE_CHECKING:
    from ..runtime import ListenerRuntime

__all__ = ["Inline", "serve"]

log = logging.getLogger(__name__)

_NO_TIMEOUT: Final = contextlib.nullcontext()
_REPLY_GRACE: Final = 1.0


async def serve(lrt: ListenerRuntime, down: Downstream, ev: RequestReceived) -> None:
    """Proxy one stream in this task. Never raises except on cancellation."""
    ex = Exchange(lrt, down, ev)
    try:
        if ex.begin():
            await run(ex, ex.steps())
    finally:
        ex.finish()


async def run(ex: Exchange, steps: Steps, action: object = NONE) -> None:
    """Drive ``steps`` (after performing ``action``, when given) within the request's
    deadline; the stream's cancellation is recorded, never swallowed."""
    try:
        timeout = ex.deadline - time.monotonic() if ex.deadline is not None else None
        try:
            with anyio.fail_after(max(timeout, 0.0)) if timeout is not None else _NO_TIMEOUT:
                if ex.ev.end_stream:
                    await drive(steps, action)
                else:
                    async with anyio.create_task_group() as tg:
                        ex.tg = tg
                        await drive(steps, action)
                        tg.cancel_scope.cancel()
        except TimeoutError:
            await _timed_out(ex)
    except BaseException:  # cancelled: the client left, or the drain's grace ran out
        ex.cancelled()
        raise


async def _timed_out(ex: Exchange) -> None:
    """Answer 504 through the response hooks (``replies.py``); hooks that wait get
    :data:`_REPLY_GRACE` seconds, after which the reply goes out without the rest."""
    reply = LocalReply(504, reason="request timeout")
    with anyio.move_on_after(_REPLY_GRACE):
        await drive(answer(ex, reply, ALL))
        return
    ex.local_now(reply)  # the hooks did not finish: the reply goes out as it is


class Inline:
    """One exchange driven by protocol callbacks, until it ends or is handed over."""

    __slots__ = ("cancelled", "conn", "ex", "scope", "steps", "stream", "timer", "wait")

    def __init__(self, conn: InlineHost, lrt: ListenerRuntime, ev: RequestReceived) -> None:
        self.conn = conn
        self.ex = Exchange(lrt, conn, ev)
        self.steps: Steps | None = None
        self.stream: H1Stream | H2Stream | None = None
        """The upstream stream watched while the machine waits in a callback."""
        self.wait: WaitHead | None = None
        """The action it waits on (handed to a task if the wait cannot end here)."""
        self.timer: asyncio.TimerHandle | None = None
        """The deadline of that wait, if it has one."""
        self.scope: anyio.CancelScope | None = None
        """The cancel scope of the task the machine was handed to."""
        self.cancelled = False

    def start(self) -> None:
        ex = self.ex
        if not ex.begin():
            self.end()
            return
        self.steps = ex.steps()
        self.step(None)

    def step(self, value: object) -> None:
        """Run the machine with ``value`` until it ends or asks for an action."""
        assert self.steps is not None
        try:
            action = self.steps.send(value)
        except StopIteration:  # (returned after a local reply)
            action = DONE
        if action is DONE:
            self.end()
            return
        # What may wait in a callback, decided here only: the response head of a try on
        # a pooled connection (which can watch it). A deadline (the try's or the
        # request's) arms a timer that hands the wait over to a task, whose timeouts
        # then take effect exactly as they would have from the start.
        if type(action) is WaitHead:
            stream = action.stream
            if type(stream) is H1Stream or type(stream) is H2Stream:
                assert isinstance(stream, (H1Stream, H2Stream))
                self.stream = stream
                self.wait = action
                stream.watch(self.on_upstream)
                deadline = action.deadline
                if self.ex.deadline is not None and (
                    deadline is None or self.ex.deadline < deadline
                ):
                    deadline = self.ex.deadline
                if deadline is not None:
                    self.timer = asyncio.get_running_loop().call_later(
                        max(deadline - time.monotonic(), 0.0), self.on_deadline
                    )
                return
        self.hand_over(action)

    def _unwatch(self) -> None:
        assert self.stream is not None
        self.stream.watch(None)
        self.stream = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_upstream(self) -> None:
        """The watched upstream stream got events or its connection closed (its
        ``watcher``)."""
        stream = self.stream
        assert stream is not None
        ev = whole_response(stream.events)
        if ev is True and not stream.closed:
            return  # the response is still arriving (its events stay queued)
        wait = self.wait
        self._unwatch()
        if type(ev) is ResponseReceived:
            stream.consumed(len(ev.body))
            self.step(ev)
        else:  # 1xx, streamed, reset or EOF: the task reads the queued events
            self.hand_over(wait)

    def on_deadline(self) -> None:
        """A deadline came while the response was awaited: the task enforces it."""
        self.timer = None
        wait = self.wait
        self._unwatch()
        self.hand_over(wait)

    def hand_over(self, action: object) -> None:
        log.debug("stream %s: continues in a task (%r)", self.ex.ctx.stream_id, action)
        self.conn.listener.tg.start_soon(self._task, action)

    async def _task(self, action: object) -> None:
        assert self.steps is not None
        try:
            if not self.cancelled:
                with anyio.CancelScope() as self.scope:
                    await run(self.ex, self.steps, action)
            else:
                close_action(action)  # the client left before the task ran
            if self.cancelled:
                self.ex.cancelled()
        finally:
            self.scope = None
            self.steps.close()
            self.end()

    def cancel(self) -> None:
        """The client left (downstream ``connection_lost``), or the drain aborted it."""
        self.cancelled = True
        if self.stream is not None:  # waiting in a callback
            self._unwatch()
            assert self.steps is not None
            self.steps.close()  # the machine leaves its layers
            self.ex.cancelled()
            self.end()
        elif self.scope is not None:
            self.scope.cancel()

    def end(self) -> None:
        self.ex.finish()
        self.conn.end_inline(self)
