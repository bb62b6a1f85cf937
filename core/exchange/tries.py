"""The upstream tries: the layers' policies around the terminal, as one walk.

Theory of operation
-------------------
:func:`tries` is part of the exchange machine (a generator that yields what must
be awaited, ``machine.py``). With the layers of the chain outermost first:

1. enter: each layer's ``before_try`` (sdk/_policy.py), keeping its state; a
   ``Pending`` is yielded and its result is the state;
2. the try: ``terminal(request)``, a sub-machine (``upstream.py``) that picks
   the endpoint, sends and waits for the response head;
3. leave: each entered layer's ``after_try``, innermost first, with the try's
   :class:`~plait.sdk.TryOutcome`. A ``TryAgain`` from a layer keeps that layer
   (and the layers outside it) entered: the walk yields the backoff, then goes
   back to 1 from the next layer inwards with ``TryAgain.request`` (a retried
   response's small body is read first, so its connection goes back to the pool).

A hook that raises makes that the outcome for the layers outside it, as the
try's own failure would be. A layer with ``around_upstream`` (the escape hatch)
is awaited with ``call_next`` making the rest of the walk (its inner layers
and the try) in a nested driver; the layers outside it are left with its result.

Invariant: every layer entered is left exactly once per try that reached it:
by ``after_try`` with the outcome, or, when the walk is closed (the client left,
the deadline passed), with a cancellation as the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio

from plait.sdk import (
    Pending,
    PlaitError,
    StreamContext,
    TryAgain,
    TryOutcome,
    UpstreamRequest,
    UpstreamResponse,
)

from .actions import Backoff
from .chain import ChainRun

log = logging.getLogger(__name__)

__all__ = ["Steps", "Terminal", "tries"]

Steps = Generator[Any, Any, UpstreamResponse]
Terminal = Callable[[UpstreamRequest], Steps]
Drive = Callable[[Steps], Awaitable[UpstreamResponse]]


class _Walk:
    """One request's pass through the layers, kept between the generator's yields.
    Entering and leaving are plain methods: only the waits are the generator's.

    The entered layers are those from ``start`` up to ``top`` (exclusive) that the
    request does not skip: entering goes inwards and leaving outwards, so they are
    always that range. What each one entered with lives in ``slots``, three per
    position: its state, the request it saw and the tries it has seen since."""

    __slots__ = ("ctx", "deadline", "error", "pending", "response", "run", "slots", "start", "top")

    def __init__(self, run: ChainRun, deadline: float, start: int) -> None:
        self.run = run
        self.ctx = run.ctx
        self.deadline = deadline
        self.slots: list[Any] = [None, None, 0] * len(run.chain.layers)
        self.start = start
        self.top = start
        self.response: UpstreamResponse | None = None
        self.error: BaseException | None = None
        self.pending: Awaitable[Any] | None = None

    def reset(self) -> None:
        """A new try: no outcome yet. (A method, not assignments at the call site: mypy
        would narrow the attributes to ``None`` there, and mypyc compile that in.)"""
        self.response = None
        self.error = None

    def enter(self, request: UpstreamRequest, pos: int) -> int:
        """Enter the layers from ``pos`` inwards; where it stopped: ``len(layers)`` (make
        the try), or a layer that needs the driver (``around_upstream``, or ``pending``
        set), or one whose ``before_try`` raised (``error`` set)."""
        run, ctx, slots = self.run, self.ctx, self.slots
        layers, skipped, instances = run.chain.layers, run.skipped, run.instances
        while pos < len(layers):
            layer = layers[pos]
            if skipped is not None and layer.index in skipped:
                pos += 1
                continue
            if layer.around:
                break
            state: object = None
            if layer.before:
                try:
                    state = instances[layer.index].before_try(ctx, request)
                except Exception as exc:
                    self.error = exc
                    break
                if type(state) is Pending:
                    self.pending = state.ready
                    break
            i = 3 * pos
            slots[i] = state
            slots[i + 1] = request
            slots[i + 2] = 0
            pos += 1
        self.top = pos
        return pos

    def entered_with(self, pos: int, state: object, request: UpstreamRequest) -> None:
        """The layer at ``pos`` entered with a ``Pending``'s result as its state."""
        i = 3 * pos
        self.slots[i] = state
        self.slots[i + 1] = request
        self.slots[i + 2] = 0
        self.top = pos + 1

    def leave(self, abandoning: bool = False) -> TryAgain | None:
        """Leave the entered layers, innermost first, with the try's outcome; a layer's
        ``TryAgain`` (that layer stays entered), or ``None`` when all are left (always,
        ``abandoning``)."""
        run, ctx, slots = self.run, self.ctx, self.slots
        layers, skipped, instances = run.chain.layers, run.skipped, run.instances
        outcome: TryOutcome[Any] | None = None  # one per walk, handed from layer to layer
        pos = self.top
        while pos > self.start:
            pos -= 1
            layer = layers[pos]
            if skipped is not None and layer.index in skipped:
                continue
            i = 3 * pos
            tries: int = slots[i + 2] + 1
            slots[i + 2] = tries
            if not layer.after:
                continue
            if outcome is None:
                outcome = TryOutcome(self.response, self.error, slots[i], tries, self.deadline)
            else:
                outcome.response, outcome.error = self.response, self.error
                outcome.state, outcome.tries = slots[i], tries
            try:
                again = instances[layer.index].after_try(ctx, slots[i + 1], outcome)
            except Exception as exc:
                if abandoning:
                    log.exception("stream %s: layer failed on abandon", ctx.stream_id)
                else:
                    self.response, self.error = None, exc
                continue
            if again is not None and not abandoning:
                self.top = pos + 1
                return again
        self.top = self.start
        return None

    def abandon(self) -> None:
        """Leave every entered layer with a cancellation (results and errors ignored)."""
        self.response, self.error = None, asyncio.CancelledError()
        self.leave(abandoning=True)


def tries(
    run: ChainRun,
    request: UpstreamRequest,
    terminal: Terminal,
    drive: Drive,
    deadline: float,
    start: int = 0,
) -> Steps:
    """The layers from ``start`` inwards around ``terminal``; the final response (or raise).
    ``drive`` runs a nested walk for ``around_upstream``'s ``call_next``."""
    walk = _Walk(run, deadline, start)
    layers = run.chain.layers
    pos = start
    try:
        while True:
            walk.reset()
            pos = walk.enter(request, pos)  # 1. enter
            while pos < len(layers) and walk.error is None:
                layer = layers[pos]
                if layer.around:
                    inner = _call_next(run, terminal, drive, deadline, pos + 1)
                    instance = run.instances[layer.index]
                    try:
                        walk.response = yield instance.around_upstream(walk.ctx, request, inner)
                    except Exception as exc:
                        walk.error = exc
                    break
                ready, walk.pending = walk.pending, None
                try:
                    state = yield ready  # a Pending: its result is the layer's state
                except Exception as exc:
                    walk.error = exc
                    break
                walk.entered_with(pos, state, request)
                pos = walk.enter(request, pos + 1)
            if pos == len(layers) and walk.error is None:  # 2. the try
                try:
                    walk.response = yield from terminal(request)
                except Exception as exc:
                    walk.error = exc
            again = walk.leave()  # 3. leave
            if again is None:
                if walk.error is not None:
                    raise walk.error
                assert walk.response is not None
                return walk.response
            response = walk.response
            if response is not None and response.body.whole is None:
                yield _discard(response)
            if again.after > 0:
                yield Backoff(again.after)
            request, pos = again.request, walk.top
    except BaseException:  # closed (cancelled) mid-walk: leave what is entered
        walk.abandon()
        raise


async def _discard(response: UpstreamResponse) -> None:
    """Read a retried response's (small) body so its connection can be reused; a big or
    slow one is left to the exchange, which resets it when the stream ends."""
    with anyio.move_on_after(1.0), contextlib.suppress(PlaitError):
        await response.body.read_all(64 * 1024)


def _call_next(
    run: ChainRun, terminal: Terminal, drive: Drive, deadline: float, start: int
) -> Callable[[StreamContext, UpstreamRequest], Awaitable[UpstreamResponse]]:
    """``call_next`` for an ``around_upstream`` layer: the walk from ``start`` inwards."""

    def call_next(ctx: StreamContext, request: UpstreamRequest) -> Awaitable[UpstreamResponse]:
        return drive(tries(run, request, terminal, drive, deadline, start))

    return call_next
