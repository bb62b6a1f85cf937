"""The driver of the exchange machine: in a task, or from HTTP/1.1 protocol callbacks.

Theory of operation
-------------------
:func:`serve` runs one stream in the calling task (HTTP/2 stream workers, the
HTTP/1.1 request loop): :meth:`Exchange.begin`, then the machine's actions
performed one by one (``actions.drive``) inside the request's deadline (a cancel
scope: past it the machine is closed and the client gets 504) and, for a
request whose body streams, a task group owning the body pump.

:class:`Inline` drives the same machine from callbacks, for a whole request: one
on an idle HTTP/1.1 connection (``H1Connection.data_received``), or an HTTP/2
stream whose request ended with its HEADERS (``H2Connection``); the machine runs
in the callback until its first action. :meth:`Inline.step` is the one place that
decides what may wait without a task: a :class:`~.actions.WaitHead` on a warm
HTTP/1.1 upstream connection, when neither the try nor the request has a
deadline. It is served by watching that connection: its ``data_received`` sends
the whole response (a small body may come in a few reads; the events stay queued
until the last) back into the machine, which answers the client in that callback.
Any other action (an async hook, a connect, a backoff, a streamed or 1xx
response, a reset) *hands the machine over* to a task in the listener's task
group, which performs that action and drives the rest exactly as :func:`serve`
does, within what is left of the request's deadline.

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

import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import LocalReply

from ..codec import DataReceived, Event, RequestReceived, ResponseReceived
from ..upstream._h1 import H1Stream
from .actions import DONE, NONE, Steps, WaitHead, close_action, drive
from .machine import Exchange
from .replies import ALL, answer
from .streams import Downstream, InlineHost

if TYPE_CHECKING:
    from ..runtime import ListenerRuntime

__all__ = ["Inline", "serve"]

log = logging.getLogger(__name__)

_MAX_PARTS: Final = 16  # queued events of one response before it streams in a task instead
_MAX_WHOLE: Final = 64 * 1024  # larger bodies, and bodies without a length, stream in a task
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
    """One exchange driven by protocol callbacks, until it ends or is handed over."""

    __slots__ = ("cancelled", "conn", "ex", "scope", "steps", "stream")

    def __init__(self, conn: InlineHost, lrt: ListenerRuntime, ev: RequestReceived) -> None:
        self.conn = conn
        self.ex = Exchange(lrt, conn, ev)
        self.steps: Steps | None = None
        self.stream: H1Stream | None = None
        """The upstream stream watched while the machine waits in a callback."""
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
        # an HTTP/1.1 connection (which can watch it), with no deadline to enforce (the
        # task driver's cancel scope and the try's timer enforce those).
        if type(action) is WaitHead and action.deadline is None and self.ex.deadline is None:
            stream = action.stream
            if type(stream) is H1Stream:
                self.stream = stream
                stream.watch(self.on_upstream)
                return
        self.hand_over(action)

    def on_upstream(self) -> None:
        """The watched upstream connection got events or closed (its ``watcher``)."""
        stream = self.stream
        assert stream is not None
        ev = _whole(stream.events)
        if ev is True and not stream.conn.closed:
            return  # the response is still arriving (its events stay queued)
        stream.watch(None)
        self.stream = None
        if type(ev) is ResponseReceived:
            self.step(ev)
        else:  # 1xx, streamed, reset or EOF: the task reads the queued events
            self.hand_over(WaitHead(stream, None))

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
            self.stream.watch(None)
            self.stream = None
            assert self.steps is not None
            self.steps.close()  # the machine leaves its layers
            self.ex.cancelled()
            self.end()
        elif self.scope is not None:
            self.scope.cancel()

    def end(self) -> None:
        self.ex.finish()
        self.conn.end_inline(self)
