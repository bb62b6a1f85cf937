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
from .chain import ChainRun, Layer

__all__ = ["Steps", "Terminal", "tries"]

log = logging.getLogger(__name__)

Steps = Generator[Any, Any, UpstreamResponse]
Terminal = Callable[[UpstreamRequest], Steps]
Drive = Callable[[Steps], Awaitable[UpstreamResponse]]


class _Entered:
    """A layer entered for the try in progress: its state and the request it saw."""

    __slots__ = ("after", "instance", "pos", "request", "state", "tries")

    def __init__(
        self, pos: int, layer: Layer, instance: object, state: object, request: UpstreamRequest
    ) -> None:
        self.pos = pos
        self.after = layer.after
        self.instance = instance
        self.state = state
        self.request = request
        self.tries = 0


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
    layers, instances, ctx = run.chain.layers, run.instances, run.ctx
    entered: list[_Entered] = []
    pos = start
    try:
        while True:
            response: UpstreamResponse | None = None
            error: Exception | None = None
            while pos < len(layers):  # 1. enter
                layer = layers[pos]
                if run.skipped is not None and layer.index in run.skipped:
                    pos += 1
                    continue
                instance = instances[layer.index]
                if layer.around is not None:
                    inner = _call_next(run, terminal, drive, deadline, pos + 1)
                    try:
                        response = yield layer.around(instance, ctx, request, inner)
                    except Exception as exc:
                        error = exc
                    break
                state: object = None
                if layer.before is not None:
                    try:
                        state = layer.before(instance, ctx, request)
                        if type(state) is Pending:
                            state = yield state.ready
                    except Exception as exc:
                        error = exc
                        break
                entered.append(_Entered(pos, layer, instance, state, request))
                pos += 1
            else:  # 2. the try
                try:
                    response = yield from terminal(request)
                except Exception as exc:
                    error = exc
            again: TryAgain | None = None
            outcome: TryOutcome[Any] | None = None  # one per walk, handed from layer to layer
            while entered:  # 3. leave
                one = entered.pop()
                one.tries += 1
                if one.after is None:
                    continue
                if outcome is None:
                    outcome = TryOutcome(response, error, one.state, one.tries, deadline)
                else:
                    outcome.response, outcome.error = response, error
                    outcome.state, outcome.tries = one.state, one.tries
                try:
                    again = one.after(one.instance, ctx, one.request, outcome)
                except Exception as exc:
                    response, error = None, exc
                    continue
                if again is not None:
                    entered.append(one)
                    break
            if again is None:
                if error is not None:
                    raise error
                assert response is not None
                return response
            if response is not None and response.body.whole is None:
                yield _discard(response)
            if again.after > 0:
                yield Backoff(again.after)
            request, pos = again.request, entered[-1].pos + 1
    except BaseException:  # closed (cancelled) mid-walk: leave what is entered
        _abandon(run, entered, deadline)
        raise


def _abandon(run: ChainRun, entered: list[_Entered], deadline: float) -> None:
    cancelled = asyncio.CancelledError()
    while entered:
        one = entered.pop()
        if one.after is None:
            continue
        try:
            outcome = TryOutcome(None, cancelled, one.state, one.tries + 1, deadline)
            one.after(one.instance, run.ctx, one.request, outcome)
        except Exception:
            log.exception("stream %s: layer failed on abandon", run.ctx.stream_id)


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
