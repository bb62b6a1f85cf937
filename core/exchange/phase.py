"""What a walk of the chain's hooks gives: an outcome, or a stop at an async hook.

:class:`PhaseOutcome` is what a phase's walk decided (``chain.py``). At an
``async`` hook the walk returns a :class:`Suspended` instead: the hook's
awaitable and the place to resume from. The exchange machine yields the
awaitable to its driver (:func:`settled`); async code awaits it (:func:`settle`).
Either way the same walk resumes with the result, so there is one walk per phase
for sync and async hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Final

from plait.sdk import LocalReply

from .actions import drive

__all__ = ["NOTHING", "PASS", "PhaseOutcome", "Raised", "Suspended", "settle", "settled"]


@dataclass(slots=True)
class PhaseOutcome:
    """What a phase's walk decided.

    ``reply`` set: answer locally (``by``: the index of the filter whose hook answered).
    ``buffer_from`` set: collect the whole body, then walk the data hooks again from
    there. ``buffer_limit``: a head hook asked for the whole body first. ``data``: the
    (possibly rewritten) chunk to pass on.
    """

    reply: LocalReply | None = None
    buffer_from: int | None = None
    buffer_limit: int = 0
    data: bytes = b""
    by: int = -1


PASS: Final = PhaseOutcome()
"""A phase that changed nothing (also what a phase without hooks gives, unwalked)."""
NOTHING: Final = object()  # no awaited result to resume with


class Raised:
    """What a hook raised, carried back into its walk to be contained there."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class Suspended:
    """A walk stopped at an async hook: await ``awaitable``, then :meth:`resume`."""

    __slots__ = ("_args", "_walk", "awaitable")

    def __init__(self, awaitable: Awaitable[Any], walk: Callable[..., Any], args: tuple[Any, ...]):
        self.awaitable = awaitable
        self._walk = walk
        self._args = args

    def resume(self, result: object) -> PhaseOutcome | Suspended:
        """The same walk, from the async hook, with its awaited result (a ``Raised``:
        what it raised, contained as a sync hook's failure would be)."""
        outcome: PhaseOutcome | Suspended = self._walk(*self._args, result)
        return outcome


def settled(out: PhaseOutcome | Suspended) -> Generator[Awaitable[Any], Any, PhaseOutcome]:
    """A phase's outcome, yielding each async hook's awaitable to the driver."""
    while type(out) is Suspended:
        try:
            result = yield out.awaitable
        except Exception as exc:
            result = Raised(exc)
        out = out.resume(result)
    assert type(out) is PhaseOutcome
    return out


async def settle(out: PhaseOutcome | Suspended) -> PhaseOutcome:
    """A walk's outcome in async code (a body, a tunnel): its async hooks awaited."""
    if type(out) is PhaseOutcome:
        return out
    settled_out: PhaseOutcome = await drive(settled(out))
    return settled_out
