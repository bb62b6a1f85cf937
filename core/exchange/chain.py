"""The filter chain: compiled once per config snapshot, walked once per message.

Theory of operation
-------------------
A :class:`Chain` is compiled from an ordered list of :class:`FilterEntry`. It
decides, per filter and per hook, whether the hook is implemented at all (a hook
inherited unchanged from :class:`~plait.sdk.HttpFilter` is skipped, so unused
hooks cost nothing) and whether it is ``async`` (decided once, here).

Per stream, :meth:`Chain.start` makes a :class:`ChainRun`: one filter instance
per entry (or the shared instance of a ``stream_independent`` filter).
Request-phase hooks run in list order, response-phase hooks in reverse order;
of the upstream layers (``before_try``/``after_try``, or ``around_upstream``),
the first filter is the outermost (their walk: ``tries.py``).

One walk per phase, for sync and async hooks alike: :meth:`ChainRun.heads`,
:meth:`ChainRun.data` and :meth:`ChainRun.trailers` call the hooks in order and
return the phase's :class:`PhaseOutcome`; at an ``async`` hook they return a
:class:`Suspended` instead, which holds the hook's awaitable and the place to
resume from (``phase.py``); so does a sync hook that returns ``Pending(awaitable)``
when it has to wait this time (a callout, a pause resumed later), so a hook that
rarely waits stays on the callback path otherwise. Whoever awaits it (the exchange's
driver, through ``settled``) resumes the same walk with the result.

Invariants:
  * ``on_stream_complete`` runs exactly once per instance (:meth:`ChainRun.complete`).
  * A hook that raises is contained: FailClosed → ``LocalReply(500)``; FailOpen →
    the filter is skipped for the rest of the stream. Either way the failure is
    logged with the filter's name and counted. Cancellation is never swallowed.
  * ``Buffer`` from a data hook stops the walk with ``buffer_from``: the caller
    collects the whole body (bounded by the limit) and walks again from that
    filter with the whole body and ``end_stream=True`` (``bodies.py``). From a
    head hook it sets ``buffer_limit``: the body is collected before the data hooks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from plait.sdk import (
    HOOK_NAMES,
    Buffer,
    Continue,
    FailStrategy,
    Headers,
    HttpFilter,
    LocalReply,
    Pending,
    StreamContext,
)

from ..config import FilterEntry
from .phase import NOTHING, PASS, PhaseOutcome, Raised, Suspended

__all__ = ["Chain", "ChainRun", "FilterFailureCounter", "Hook", "Layer"]

log = logging.getLogger(__name__)

FilterFailureCounter = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Hook:
    """A hook a filter overrides. It is called on the instance (``instance.on_...``): a
    native call through :class:`HttpFilter`'s vtable for a compiled filter, an ordinary
    method call for any other; ``response`` says which phase's hook of the name."""

    index: int
    is_async: bool
    response: bool


@dataclass(frozen=True, slots=True)
class Layer:
    """An upstream layer: which of its policy hooks it overrides, or that it has an
    ``around_upstream`` (the escape hatch)."""

    index: int
    before: bool
    after: bool
    around: bool


def _awaitable(res: Any) -> Any:
    """What a suspended hook waits for: an ``async`` hook's coroutine, or the awaitable of
    the ``Pending`` a sync hook returned when it had to wait (its result is the hook's)."""
    return res.ready if type(res) is Pending else res


def _implemented(cls: type, name: str) -> Callable[..., Any] | None:
    fn = getattr(cls, name, None)
    if fn is None or fn is getattr(HttpFilter, name, None):
        return None
    return fn  # type: ignore[no-any-return]


class Chain:
    """An ordered, compiled filter chain (immutable; shared by every stream)."""

    def __init__(
        self, entries: Sequence[FilterEntry], on_failure: FilterFailureCounter | None = None
    ) -> None:
        self.entries = tuple(entries)
        self._on_failure = on_failure
        self._makers = [e.spec.factory(e.config) for e in self.entries]
        self._shared: list[HttpFilter | None] = []
        hooks: dict[str, list[Hook]] = {h: [] for h in HOOK_NAMES}
        layers: list[Layer] = []
        for i, entry in enumerate(self.entries):
            make = self._makers[i]
            cls = entry.spec.make if isinstance(entry.spec.make, type) else type(make())
            if not issubclass(cls, HttpFilter):
                raise TypeError(
                    f"filter {entry.name}: {cls.__qualname__} does not subclass "
                    "plait.sdk.HttpFilter (the filter contract)"
                )
            self._shared.append(make() if entry.spec.stream_independent else None)
            found = {name: _implemented(cls, name) for name in HOOK_NAMES}
            for name, fn in found.items():
                if fn is not None:
                    response = name.startswith("on_response")
                    hooks[name].append(Hook(i, inspect.iscoroutinefunction(fn), response))
            before, after = found["before_try"] is not None, found["after_try"] is not None
            if found["around_upstream"] is not None:
                layers.append(Layer(i, False, False, True))
            elif before or after:
                layers.append(Layer(i, before, after, False))
        self.request_headers = tuple(hooks["on_request_headers"])
        self.request_data = tuple(hooks["on_request_data"])
        self.request_trailers = tuple(hooks["on_request_trailers"])
        self.response_headers = tuple(reversed(hooks["on_response_headers"]))
        self.response_data = tuple(reversed(hooks["on_response_data"]))
        self.response_trailers = tuple(reversed(hooks["on_response_trailers"]))
        self.complete_hooks = tuple(hooks["on_stream_complete"])
        self.layers = tuple(layers)
        """The upstream layers, outermost first."""
        self._all_shared: list[HttpFilter] | None = (
            [x for x in self._shared if x is not None]
            if all(e.spec.stream_independent for e in self.entries)
            else None
        )

    def start(self, ctx: StreamContext) -> ChainRun:
        """Make the per-stream instances (none for filters that keep no per-stream state)."""
        if self._all_shared is not None:
            return ChainRun(self, ctx, self._all_shared)
        instances = [
            shared if shared is not None else make()
            for make, shared in zip(self._makers, self._shared, strict=True)
        ]
        return ChainRun(self, ctx, instances)

    def failed(self, index: int, hook: str, exc: BaseException) -> None:
        name = self.entries[index].name
        log.error("filter %s failed in %s: %r", name, hook, exc, exc_info=exc)
        if self._on_failure is not None:
            self._on_failure(name)


class ChainRun:
    """One stream's pass through a :class:`Chain`."""

    __slots__ = ("_completed", "chain", "ctx", "instances", "skipped")

    def __init__(self, chain: Chain, ctx: StreamContext, instances: list[HttpFilter]) -> None:
        self.chain = chain
        self.ctx = ctx
        self.instances = instances
        self.skipped: set[int] | None = None
        """Filters skipped for the rest of the stream (FailOpen filters that failed)."""
        self._completed = False

    def heads(
        self,
        hooks: tuple[Hook, ...],
        headers: Headers,
        end_stream: bool,
        start: int = 0,
        limit: int = 0,
        awaited: object = NOTHING,
    ) -> PhaseOutcome | Suspended:
        """Walk head hooks (``chain.request_headers`` or ``response_headers``). A ``Buffer``
        does not stop the walk: the smallest limit asked is the outcome's ``buffer_limit``."""
        ctx, skipped = self.ctx, self.skipped
        res: Any  # a result, or an async hook's awaitable
        for pos in range(start, len(hooks)):
            h = hooks[pos]
            if skipped is not None and h.index in skipped:
                continue
            if awaited is not NOTHING:
                res, awaited = awaited, NOTHING
            else:
                try:
                    inst = self.instances[h.index]
                    if h.response:
                        res = inst.on_response_headers(ctx, headers, end_stream)
                    else:
                        res = inst.on_request_headers(ctx, headers, end_stream)
                except Exception as exc:
                    res = Raised(exc)
                else:
                    if h.is_async or type(res) is Pending:
                        args = (hooks, headers, end_stream, pos, limit)
                        return Suspended(_awaitable(res), self.heads, args)
            if res is None or type(res) is Continue:
                continue
            if type(res) is Raised:
                res = self._contain(h.index, "headers", res.exc)
                if res is None:
                    continue
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res, by=h.index)
            if isinstance(res, Buffer):
                if not end_stream:
                    limit = res.limit if not limit else min(limit, res.limit)
            elif not isinstance(res, Continue):
                return PhaseOutcome(reply=self._bad_result(h.index, res), by=h.index)
        return PhaseOutcome(buffer_limit=limit) if limit else PASS

    def data(
        self,
        hooks: tuple[Hook, ...],
        data: bytes,
        end_stream: bool,
        start: int = 0,
        stop: int = -1,
        awaited: object = NOTHING,
    ) -> PhaseOutcome | Suspended:
        """Walk data hooks ``start..stop`` (positions in the phase's order; -1: to the end)."""
        ctx, skipped = self.ctx, self.skipped
        res: Any  # a result, or an async hook's awaitable
        for pos in range(start, len(hooks) if stop < 0 else stop):
            h = hooks[pos]
            if skipped is not None and h.index in skipped:
                continue
            if awaited is not NOTHING:
                res, awaited = awaited, NOTHING
            else:
                try:
                    inst = self.instances[h.index]
                    if h.response:
                        res = inst.on_response_data(ctx, data, end_stream)
                    else:
                        res = inst.on_request_data(ctx, data, end_stream)
                except Exception as exc:
                    res = Raised(exc)
                else:
                    if h.is_async or type(res) is Pending:
                        args = (hooks, data, end_stream, pos, stop)
                        return Suspended(_awaitable(res), self.data, args)
            if res is None:
                continue
            if type(res) is Raised:
                reply = self._contain(h.index, "data", res.exc)
                if reply is not None:
                    return PhaseOutcome(reply=reply, by=h.index)
                continue
            if isinstance(res, Continue):
                if res.data is not None:
                    data = res.data
                continue
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res, by=h.index)
            if isinstance(res, Buffer):
                if end_stream:
                    continue  # the whole body is here already
                return PhaseOutcome(buffer_from=pos, buffer_limit=res.limit, data=data)
            return PhaseOutcome(reply=self._bad_result(h.index, res), by=h.index)
        return PhaseOutcome(data=data)

    def trailers(
        self, hooks: tuple[Hook, ...], trailers: Headers, start: int = 0, awaited: object = NOTHING
    ) -> PhaseOutcome | Suspended:
        """Walk trailer hooks; only a ``LocalReply`` (or a failure) changes anything."""
        res: Any  # a result, or an async hook's awaitable
        for pos in range(start, len(hooks)):
            h = hooks[pos]
            if self.skipped is not None and h.index in self.skipped:
                continue
            if awaited is not NOTHING:
                res, awaited = awaited, NOTHING
            else:
                try:
                    inst = self.instances[h.index]
                    if h.response:
                        res = inst.on_response_trailers(self.ctx, trailers)
                    else:
                        res = inst.on_request_trailers(self.ctx, trailers)
                except Exception as exc:
                    res = Raised(exc)
                else:
                    if h.is_async or type(res) is Pending:
                        return Suspended(_awaitable(res), self.trailers, (hooks, trailers, pos))
            if type(res) is Raised:
                res = self._contain(h.index, "trailers", res.exc)
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res, by=h.index)
        return PASS

    def complete(self) -> None:
        """Run every ``on_stream_complete`` hook, exactly once; never raises."""
        if self._completed:
            return
        self._completed = True
        for h in self.chain.complete_hooks:
            try:
                self.instances[h.index].on_stream_complete(self.ctx)
            except Exception as exc:
                self.chain.failed(h.index, "on_stream_complete", exc)

    def _contain(self, index: int, hook: str, exc: Exception) -> LocalReply | None:
        chain = self.chain
        chain.failed(index, hook, exc)
        entry = chain.entries[index]
        if entry.fail_strategy is FailStrategy.FAIL_OPEN:
            if self.skipped is None:
                self.skipped = set()
            self.skipped.add(index)
            return None
        return LocalReply(500, b"filter failed\n", reason=f"filter {entry.name} failed")

    def _bad_result(self, index: int, res: object) -> LocalReply:
        exc = TypeError(f"hook returned {res!r}, expected Continue, Buffer, LocalReply or None")
        reply = self._contain(index, "result", exc)
        return reply or LocalReply(500, reason=f"filter {self.chain.entries[index].name} failed")
