"""The filter-chain driver.

Theory of operation
-------------------
A :class:`Chain` is compiled once per config snapshot from an ordered list of
:class:`FilterEntry`. Compilation decides, per filter and per hook, whether the
hook is implemented at all (a hook inherited unchanged from
:class:`PassThroughFilter` is skipped, so unused hooks cost nothing) and whether
it is ``async`` (decided once here, never per call: sync filters cost no await).

Per stream, :meth:`Chain.start` makes a :class:`ChainRun`: one filter instance
per entry (or the shared instance of a ``stream_independent`` filter).
Request-phase hooks run in list order, response-phase hooks in reverse order,
``around_upstream`` layers compose with the first filter outermost.

Invariants:
  * ``on_stream_complete`` runs exactly once per instance, via
    :meth:`ChainRun.complete`, which the stream's owner calls in ``finally``.
  * A hook that raises is contained: FailClosed → ``LocalReply(500)``;
    FailOpen → the filter is skipped for the rest of the stream. Either way the
    failure is logged with the filter's name and counted. Cancellation is never
    swallowed (only ``Exception`` is caught).
  * ``Buffer`` makes the driver hold the message: the phase's caller collects
    the whole body (bounded by the limit) and calls the data hooks again from
    that filter on, with the whole body and ``end_stream=True``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from plait.sdk import (
    HOOK_NAMES,
    Buffer,
    CallNext,
    Continue,
    FailStrategy,
    Headers,
    LocalReply,
    PassThroughFilter,
    StreamContext,
    UpstreamRequest,
    UpstreamResponse,
)

from .config import FilterEntry

__all__ = ["Chain", "ChainRun", "FilterFailureCounter", "PhaseOutcome"]

log = logging.getLogger(__name__)

_HOOKS = HOOK_NAMES

FilterFailureCounter = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class _Hook:
    index: int
    fn: Callable[..., Any]
    is_async: bool


@dataclass(slots=True)
class PhaseOutcome:
    """What a phase run decided.

    ``reply`` set: answer locally. ``buffer_from`` set: collect the whole body,
    then call :meth:`ChainRun.request_data`/``response_data`` again with
    ``start=buffer_from``. ``data``: the (possibly rewritten) chunk to pass on.
    """

    reply: LocalReply | None = None
    buffer_from: int | None = None
    buffer_limit: int = 0
    data: bytes = b""


_PASS: Final = PhaseOutcome()


def _maker(entry: FilterEntry) -> Callable[[], object]:
    """How the spec makes an instance for this entry's config (``FilterSpec.factory``)."""
    return entry.spec.factory(entry.config)


def _implemented(cls: type, name: str) -> Callable[..., Any] | None:
    fn = getattr(cls, name, None)
    if fn is None or fn is getattr(PassThroughFilter, name, None):
        return None
    return fn  # type: ignore[no-any-return]


def _pairs(
    layers: tuple[_Hook, ...], before: list[_Hook], after: list[_Hook]
) -> tuple[tuple[Callable[..., Any], Callable[..., Any]], ...] | None:
    first = {h.index: h for h in before if not h.is_async}
    second = {h.index: h for h in after if not h.is_async}
    if not all(h.index in first and h.index in second for h in layers):
        return None
    return tuple((first[h.index].fn, second[h.index].fn) for h in layers)


class Chain:
    """An ordered, compiled filter chain (immutable; shared by every stream)."""

    def __init__(
        self,
        entries: Sequence[FilterEntry],
        on_failure: FilterFailureCounter | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self._on_failure = on_failure
        self._shared: list[object | None] = []
        self._makers = [_maker(e) for e in self.entries]
        hooks: dict[str, list[_Hook]] = {h: [] for h in _HOOKS}
        for i, entry in enumerate(self.entries):
            cls = self._instance_class(entry, self._makers[i])
            self._shared.append(self._makers[i]() if entry.spec.stream_independent else None)
            for name in _HOOKS:
                fn = _implemented(cls, name)
                if fn is not None:
                    hooks[name].append(_Hook(i, fn, inspect.iscoroutinefunction(fn)))
        self.request_headers = tuple(hooks["on_request_headers"])
        self.request_data = tuple(hooks["on_request_data"])
        self.request_trailers = tuple(hooks["on_request_trailers"])
        # Response phase: reverse order.
        self.response_headers = tuple(reversed(hooks["on_response_headers"]))
        self.response_data = tuple(reversed(hooks["on_response_data"]))
        self.response_trailers = tuple(reversed(hooks["on_response_trailers"]))
        self.complete_hooks = tuple(hooks["on_stream_complete"])
        self.layers = tuple(hooks["around_upstream"])
        self.pairs = _pairs(
            self.layers, hooks["on_upstream_request"], hooks["on_upstream_response"]
        )
        """Per layer (same positions as ``layers``), its sync fast pair
        (``on_upstream_request``, ``on_upstream_response``), when every layer has one."""
        self._all_shared: list[object] | None = (
            [x for x in self._shared if x is not None]
            if all(e.spec.stream_independent for e in self.entries)
            else None
        )
        self.plain_hooks = not any(
            h.is_async
            for phase in (
                self.request_headers,
                self.request_data,
                self.response_headers,
                self.response_data,
            )
            for h in phase
        )
        """No async head/data hooks: a whole message goes through them with plain calls
        (``around_upstream`` layers, if any, are still awaited)."""
        self.fast = not self.layers and self.plain_hooks
        """No layers and no async head/data hooks: a whole message can go through the
        chain with plain calls (:meth:`ChainRun.headers_now`, :meth:`ChainRun.body_now`)."""
        self.inline = self.plain_hooks and (not self.layers or self.pairs is not None)
        """Plain head/data hooks, and every layer (if any) has its fast pair: a whole
        request can be answered in callbacks (core/_inline.py, core/_layers.py)."""

    @staticmethod
    def _instance_class(entry: FilterEntry, make: Callable[[], object]) -> type:
        if isinstance(entry.spec.make, type):
            return entry.spec.make
        # A factory function: make one probe instance to learn its class.
        return type(make())

    def start(self, ctx: StreamContext) -> ChainRun:
        """Make the per-stream instances (none for filters that keep no per-stream state)."""
        if self._all_shared is not None:
            return ChainRun(self, ctx, self._all_shared)
        instances = [
            shared if shared is not None else make()
            for make, shared in zip(self._makers, self._shared, strict=True)
        ]
        return ChainRun(self, ctx, instances)

    def _failed(self, index: int, hook: str, exc: BaseException) -> None:
        name = self.entries[index].name
        log.error("filter %s failed in %s: %r", name, hook, exc, exc_info=exc)
        if self._on_failure is not None:
            self._on_failure(name)


class ChainRun:
    """One stream's pass through a :class:`Chain`."""

    __slots__ = ("_completed", "_skipped", "chain", "ctx", "instances")

    def __init__(self, chain: Chain, ctx: StreamContext, instances: list[object]) -> None:
        self.chain = chain
        self.ctx = ctx
        self.instances = instances
        self._skipped: set[int] | None = None
        self._completed = False

    # -- request/response head phases -------------------------------------------------------

    async def request_headers(self, headers: Headers, end_stream: bool) -> PhaseOutcome:
        return await self._run_headers(self.chain.request_headers, headers, end_stream)

    async def response_headers(self, headers: Headers, end_stream: bool) -> PhaseOutcome:
        return await self._run_headers(self.chain.response_headers, headers, end_stream)

    async def _run_headers(
        self, hooks: tuple[_Hook, ...], headers: Headers, end_stream: bool
    ) -> PhaseOutcome:
        """Run head hooks. A ``Buffer`` does not stop the walk: the head is held by
        the caller until the whole body is in, then the data hooks see it in one piece."""
        ctx = self.ctx
        limit = 0
        for h in hooks:
            if self._skipped is not None and h.index in self._skipped:
                continue
            try:
                res = h.fn(self.instances[h.index], ctx, headers, end_stream)
                if h.is_async:
                    res = await res
            except Exception as exc:
                res = self._contain(h.index, "headers", exc)
            if res is None or type(res) is Continue:
                continue
            done, limit = self._head_result(h, res, end_stream, limit)
            if done is not None:
                return done
        return PhaseOutcome(buffer_limit=limit) if limit else _PASS

    def headers_now(self, response: bool, headers: Headers, end_stream: bool) -> PhaseOutcome:
        """:meth:`request_headers`/``response_headers`` as plain calls (``chain.fast`` only)."""
        hooks = self.chain.response_headers if response else self.chain.request_headers
        ctx, limit = self.ctx, 0
        for h in hooks:
            if self._skipped is not None and h.index in self._skipped:
                continue
            try:
                res = h.fn(self.instances[h.index], ctx, headers, end_stream)
            except Exception as exc:
                res = self._contain(h.index, "headers", exc)
            if res is None or type(res) is Continue:
                continue
            done, limit = self._head_result(h, res, end_stream, limit)
            if done is not None:
                return done
        return PhaseOutcome(buffer_limit=limit) if limit else _PASS

    def _head_result(
        self, h: _Hook, res: object, end_stream: bool, limit: int
    ) -> tuple[PhaseOutcome | None, int]:
        if isinstance(res, LocalReply):
            return PhaseOutcome(reply=res), limit
        if isinstance(res, Buffer):
            if not end_stream:
                limit = res.limit if not limit else min(limit, res.limit)
            return None, limit
        if isinstance(res, Continue):
            return None, limit
        return PhaseOutcome(reply=self._bad_result(h.index, res)), limit

    def body_now(self, response: bool, data: bytes) -> PhaseOutcome:
        """The data hooks over a whole body, as plain calls (``chain.fast`` only)."""
        hooks = self.chain.response_data if response else self.chain.request_data
        for h in hooks:
            if self._skipped is not None and h.index in self._skipped:
                continue
            try:
                res = h.fn(self.instances[h.index], self.ctx, data, True)
            except Exception as exc:
                res = self._contain(h.index, "data", exc)
            if res is None or isinstance(res, Buffer):
                continue  # Buffer on a whole body: it is all here already
            if isinstance(res, Continue):
                if res.data is not None:
                    data = res.data
                continue
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res)
            return PhaseOutcome(reply=self._bad_result(h.index, res))
        return PhaseOutcome(data=data)

    # -- body phases ------------------------------------------------------------------------

    async def request_data(
        self, data: bytes, end_stream: bool, start: int = 0, stop: int | None = None
    ) -> PhaseOutcome:
        return await self._run_data(self.chain.request_data, data, end_stream, start, stop)

    async def response_data(
        self, data: bytes, end_stream: bool, start: int = 0, stop: int | None = None
    ) -> PhaseOutcome:
        return await self._run_data(self.chain.response_data, data, end_stream, start, stop)

    async def _run_data(
        self,
        hooks: tuple[_Hook, ...],
        data: bytes,
        end_stream: bool,
        start: int,
        stop: int | None,
    ) -> PhaseOutcome:
        """Run data hooks ``start..stop`` (positions in the phase's order)."""
        ctx = self.ctx
        for pos in range(start, len(hooks) if stop is None else stop):
            h = hooks[pos]
            if self._skipped is not None and h.index in self._skipped:
                continue
            try:
                res = h.fn(self.instances[h.index], ctx, data, end_stream)
                if h.is_async:
                    res = await res
            except Exception as exc:
                reply = self._contain(h.index, "data", exc)
                if reply is not None:
                    return PhaseOutcome(reply=reply)
                continue
            if res is None:
                continue
            if isinstance(res, Continue):
                if res.data is not None:
                    data = res.data
                continue
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res)
            if isinstance(res, Buffer):
                if end_stream:
                    continue
                return PhaseOutcome(buffer_from=pos, buffer_limit=res.limit, data=data)
            return PhaseOutcome(reply=self._bad_result(h.index, res))
        return PhaseOutcome(data=data)

    async def request_trailers(self, trailers: Headers) -> PhaseOutcome:
        return await self._run_trailers(self.chain.request_trailers, trailers)

    async def response_trailers(self, trailers: Headers) -> PhaseOutcome:
        return await self._run_trailers(self.chain.response_trailers, trailers)

    async def _run_trailers(self, hooks: tuple[_Hook, ...], trailers: Headers) -> PhaseOutcome:
        for h in hooks:
            if self._skipped is not None and h.index in self._skipped:
                continue
            try:
                res = h.fn(self.instances[h.index], self.ctx, trailers)
                if h.is_async:
                    res = await res
            except Exception as exc:
                reply = self._contain(h.index, "trailers", exc)
                if reply is not None:
                    return PhaseOutcome(reply=reply)
                continue
            if isinstance(res, LocalReply):
                return PhaseOutcome(reply=res)
        return _PASS

    # -- upstream layers --------------------------------------------------------------------

    def compose(self, terminal: CallNext, start: int = 0) -> CallNext:
        """``terminal`` wrapped by every ``around_upstream`` layer, first filter outermost
        (``start``: only the layers from that position in ``chain.layers`` inwards)."""
        call: CallNext = terminal
        for h in reversed(self.chain.layers[start:]):
            if self._skipped is not None and h.index in self._skipped:
                continue
            call = self._layer(h, call)
        return call

    def _layer(self, h: _Hook, inner: CallNext) -> CallNext:
        """``inner`` wrapped by one layer: a plain function that returns the layer's
        coroutine, so a layer costs no extra coroutine frame of its own."""
        fn, instance = h.fn, self.instances[h.index]

        def layer(ctx: StreamContext, request: UpstreamRequest) -> Awaitable[UpstreamResponse]:
            result: Awaitable[UpstreamResponse] = fn(instance, ctx, request, inner)
            return result

        return layer

    # -- end of stream ----------------------------------------------------------------------

    def complete(self) -> None:
        """Run every ``on_stream_complete`` hook, exactly once; never raises."""
        if self._completed:
            return
        self._completed = True
        for h in self.chain.complete_hooks:
            try:
                h.fn(self.instances[h.index], self.ctx)
            except Exception as exc:
                self.chain._failed(h.index, "on_stream_complete", exc)

    # -- failures ---------------------------------------------------------------------------

    def _contain(self, index: int, hook: str, exc: Exception) -> LocalReply | None:
        chain = self.chain
        chain._failed(index, hook, exc)
        entry = chain.entries[index]
        if entry.fail_strategy is FailStrategy.FAIL_OPEN:
            if self._skipped is None:
                self._skipped = set()
            self._skipped.add(index)
            return None
        return LocalReply(500, b"filter failed\n", reason=f"filter {entry.name} failed")

    def _bad_result(self, index: int, res: object) -> LocalReply:
        exc = TypeError(f"hook returned {res!r}, expected Continue, Buffer, LocalReply or None")
        reply = self._contain(index, "result", exc)
        return reply or LocalReply(500, reason=f"filter {self.chain.entries[index].name} failed")
