"""What the exchange machine asks of its driver: every wait of an exchange.

The machine (``machine.py``, ``tries.py``, ``upstream.py``) is a generator that
never waits itself: it yields one of these, and the driver (``driver.py``)
performs it and sends back the result (or throws in what it raised):

* any awaitable (an ``async`` hook, a body read, a write waiting for the
  client to read, a layer's ``Pending``): awaited as it is;
* :class:`WaitHead`: the first final response event of an upstream try. The
  driver on HTTP/1.1 callbacks waits for it without a task, watching the
  connection; the task driver reads the stream's events;
* :class:`Within`: an awaitable with the try's deadline (the per-try timeout);
  past it, ``TimeoutError`` is thrown into the machine;
* :class:`Backoff`: sleep before another try (a layer's ``TryAgain``).

The request's own deadline is not an action: the task driver's cancel scope
holds it, and closes the machine when it passes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Final

import anyio

from ..codec import Event, InformationalReceived
from ..upstream.stream import UpstreamStream

__all__ = [
    "DONE",
    "NONE",
    "Backoff",
    "Steps",
    "WaitHead",
    "Within",
    "close_action",
    "drive",
    "perform",
]

Steps = Generator[Any, Any, Any]
"""A machine, or a part of one: yields actions, receives their results."""
NONE: Final = object()  # no action to perform first
DONE: Final = object()
"""The machine's last action on its common path: the stream is over (yielded rather
than returned: a generator's return raises ``StopIteration`` in its driver, which
costs 0.35 µs per stream here)."""
_monotonic: Final = time.monotonic


class WaitHead:
    """The first final response event on ``stream`` (1xx skipped), by ``deadline``."""

    __slots__ = ("deadline", "stream")

    def __init__(self, stream: UpstreamStream, deadline: float | None) -> None:
        self.stream = stream
        self.deadline = deadline
        """On :func:`time.monotonic`'s clock; ``None``: no per-try timeout."""


class Within:
    """``awaitable``, failing with ``TimeoutError`` at ``deadline`` (monotonic clock)."""

    __slots__ = ("awaitable", "deadline")

    def __init__(self, awaitable: Awaitable[Any], deadline: float) -> None:
        self.awaitable = awaitable
        self.deadline = deadline


class Backoff:
    """Wait ``seconds`` before the next try (a ``TryAgain``'s ``after``)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


async def perform(action: object) -> Any:
    """Carry out one action; its result (what it raises goes back into the machine)."""
    kind = type(action)
    if kind is WaitHead:
        assert isinstance(action, WaitHead)
        if action.deadline is None:
            return await _head(action.stream)
        with anyio.fail_after(max(action.deadline - _monotonic(), 0.0)):
            return await _head(action.stream)
    if kind is Within:
        assert isinstance(action, Within)
        with anyio.fail_after(max(action.deadline - _monotonic(), 0.0)):
            return await action.awaitable
    if kind is Backoff:
        assert isinstance(action, Backoff)
        await anyio.sleep(action.seconds)
        return None
    return await action  # type: ignore[misc]


def close_action(action: object) -> None:
    """Drop an action that will not be performed (a coroutine is closed, not leaked)."""
    awaitable = action.awaitable if isinstance(action, Within) else action
    if isinstance(awaitable, Coroutine):
        awaitable.close()


async def _head(stream: UpstreamStream) -> Event:
    ev = await stream.read_event()
    while type(ev) is InformationalReceived:
        ev = await stream.read_event()
    return ev


async def drive(steps: Steps, action: object = NONE) -> Any:
    """Run ``steps`` to its end in this task (performing ``action`` first, when given);
    its return value. Cancelled, it closes ``steps``, so the machine leaves what it
    entered."""
    value: object = None
    error: Exception | None = None
    try:
        while True:
            if action is NONE:
                try:
                    action = steps.send(value) if error is None else steps.throw(error)
                except StopIteration as stop:
                    return stop.value
                if action is DONE:
                    return None
            try:
                value, error = await perform(action), None
            except Exception as exc:
                value, error = None, exc
            action = NONE
    except BaseException:
        steps.close()
        raise
