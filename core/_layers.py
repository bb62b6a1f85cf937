"""``around_upstream`` layers driven by their synchronous fast pairs (sdk/_layers.py).

Theory of operation
-------------------
When every layer of a chain has the fast pair (``chain.pairs``), one request's
trip through the layers is a :class:`LayerPass`, a small state machine whose
success path is plain calls:

1. :meth:`LayerPass.enter`: ``on_upstream_request`` outermost first, keeping each
   layer's state. A layer that answers ``RUN_ASYNC`` stops the walk: it runs as
   ``around_upstream``, with the layers inside it composed as usual.
2. The try itself, made by the caller: the inline HTTP/1.1 send
   (core/_inline.py) or ``terminal`` (:meth:`LayerPass.call`).
3. :meth:`LayerPass.leave`: ``on_upstream_response`` innermost first with the
   try's outcome. A layer that answers ``False`` stops the walk: its
   ``around_upstream`` runs with that outcome as its first try (``FIRST_TRY``)
   and the layers inside it composed for further tries.

Steps 1 and 3 that stop leave a pending layer; :meth:`LayerPass.finish` runs it
(``await``) and leaves the layers outside it with its result, repeating while
one of them stops in turn. A layer that raises in either hook makes that the
outcome for the layers outside it, as an exception out of ``around_upstream``
would.

Invariants
----------
* Each entered layer is left exactly once: by ``on_upstream_response``, or by
  its ``around_upstream`` taking the try over. :meth:`LayerPass.abandon` (the
  client left, cancellation) leaves the rest with a cancellation as the outcome.
* A layer skipped for the stream (a FailOpen filter that failed) is skipped here
  as in :meth:`ChainRun.compose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Final

from plait.sdk import (
    FIRST_TRY,
    RUN_ASYNC,
    CallNext,
    UpstreamOutcome,
    UpstreamRequest,
    UpstreamResponse,
)

from .chain import ChainRun

__all__ = ["LayerPass"]

log = logging.getLogger(__name__)

_SKIP: Final = object()  # the state of a layer skipped for this stream


class LayerPass:
    """One request's pass through a chain's layers (``chain.pairs`` must be set)."""

    __slots__ = ("error", "first", "pending", "request", "response", "run", "states")

    def __init__(self, run: ChainRun, request: UpstreamRequest) -> None:
        self.run = run
        self.request = request
        self.states: list[object] = []
        """The state of each layer entered and not yet left, outermost first."""
        self.pending = -1
        """The position of a layer whose ``around_upstream`` must run next, or -1."""
        self.first: UpstreamOutcome | None = None
        """The first try's outcome for the pending layer (``None``: it runs whole)."""
        self.response: UpstreamResponse | None = None
        self.error: Exception | None = None

    def enter(self) -> bool:
        """``True``: every layer entered, make the try. ``False``: no try here, call
        :meth:`finish` (a layer asked to run async, or one raised: the outcome for the
        layers outside it, which may themselves be pending)."""
        run = self.run
        chain, ctx, request, states = run.chain, run.ctx, self.request, self.states
        pairs = chain.pairs
        assert pairs is not None
        skipped = run._skipped
        for pos, h in enumerate(chain.layers):
            if skipped is not None and h.index in skipped:
                states.append(_SKIP)
                continue
            try:
                state = pairs[pos][0](run.instances[h.index], ctx, request)
            except Exception as exc:
                self.leave(None, exc)  # the layers outside it see what it raised
                return False
            if state is RUN_ASYNC:
                self.pending = pos
                return False
            states.append(state)
        return True

    def leave(self, response: UpstreamResponse | None, error: Exception | None) -> bool:
        """Leave the entered layers with a try's outcome. ``True``: all left, the result
        is in ``response``/``error``. ``False``: a layer is pending (:meth:`finish`)."""
        states = self.states
        outcome: UpstreamOutcome | None = None  # one per walk, handed from layer to layer
        while states:
            pos = len(states) - 1
            state = states.pop()
            if state is _SKIP:
                continue
            if outcome is None:
                outcome = UpstreamOutcome(response, error, state)
            else:
                outcome.response, outcome.error, outcome.state = response, error, state
            try:
                done = self._second_half(pos, outcome)
            except Exception as exc:
                response, error = None, exc
                continue
            if not done:
                self.pending, self.first = pos, outcome
                return False
        self.response, self.error = response, error
        return True

    def _second_half(self, pos: int, outcome: UpstreamOutcome) -> bool:
        run = self.run
        pairs = run.chain.pairs
        assert pairs is not None
        instance = run.instances[run.chain.layers[pos].index]
        done: bool = pairs[pos][1](instance, run.ctx, self.request, outcome)
        return done

    async def finish(self, terminal: CallNext) -> UpstreamResponse:
        """Run the pending layers (and leave the layers outside them); the result."""
        run = self.run
        ctx = run.ctx
        while self.pending >= 0:
            pos, first = self.pending, self.first
            self.pending, self.first = -1, None
            h = run.chain.layers[pos]
            inner = run.compose(terminal, pos + 1)
            if first is not None:
                ctx.stash[FIRST_TRY] = first
            response: UpstreamResponse | None = None
            error: Exception | None = None
            try:
                response = await h.fn(run.instances[h.index], ctx, self.request, inner)
            except Exception as exc:
                error = exc
            except BaseException:
                self.abandon()
                raise
            finally:
                if first is not None and FIRST_TRY in ctx.stash:
                    del ctx.stash[FIRST_TRY]  # a layer that did not take it
            self.leave(response, error)
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response

    async def call(self, terminal: CallNext) -> UpstreamResponse:
        """The whole pass with ``terminal`` as the try (the task path's equivalent of
        ``run.compose(terminal)(ctx, request)``)."""
        if self.enter():
            return await self.resume(terminal(self.run.ctx, self.request), terminal)
        return await self.finish(terminal)

    async def resume(
        self, attempt: Awaitable[UpstreamResponse], terminal: CallNext
    ) -> UpstreamResponse:
        """Await the try (the layers are entered), leave the layers with its outcome and
        :meth:`finish`; ``terminal`` makes any further tries."""
        response: UpstreamResponse | None = None
        error: Exception | None = None
        try:
            response = await attempt
        except Exception as exc:
            error = exc
        except BaseException:
            self.abandon()
            raise
        self.leave(response, error)
        return await self.finish(terminal)

    def abandon(self) -> None:
        """Leave every entered layer with a cancellation (results and errors ignored)."""
        states = self.states
        cancelled = asyncio.CancelledError() if states else None
        while states:
            state = states.pop()
            if state is not _SKIP:
                try:
                    self._second_half(len(states), UpstreamOutcome(None, cancelled, state))
                except Exception:
                    log.exception("stream %s: layer failed on abandon", self.run.ctx.stream_id)
        self.pending = -1
