"""The adapter: a Proxy-Wasm module as a plait filter (:class:`~plait.sdk.HttpFilter`).

Per stream, the filter instance creates the module's context lazily, at its
first hook, and maps each hook onto the module's callback:

=========================  ====================================================
``on_request_headers``     ``proxy_on_request_headers(ctx, n, end_of_stream)``
``on_request_data``        ``proxy_on_request_body(ctx, size, end_of_stream)``
``on_request_trailers``    ``proxy_on_request_trailers(ctx, n)``
``on_response_*``          the ``proxy_on_response_*`` counterparts
``on_stream_complete``     ``proxy_on_done``, ``proxy_on_log``, ``proxy_on_delete``
=========================  ====================================================

Results: a ``proxy_send_local_response`` during the callback is the hook's
:class:`~plait.sdk.LocalReply`, whatever the callback returns after it (as
Envoy's host does). Continue (0), or a pause the module resumed itself with
``proxy_continue_stream``, is ``Continue`` (with the rewritten chunk, if the
module changed the body buffer). A pause before the end of the stream is
:class:`~plait.sdk.Buffer`: plait holds the message and collects the rest of the
body (up to ``maxBufferBytes``), then calls the body callback again with the
whole body and ``end_of_stream`` set, so a module that pauses until the end of
the stream sees, and may replace, the whole body; headers paused this way are
still held, and still mutable, while the body callback runs, and its result
releases them. A pause in a callback that dispatched HTTP calls for the stream
waits for them (``_waiting.py``: the hook returns :class:`~plait.sdk.Pending`).
Any other pause at the end of the stream, or on the headers of a module without
the body callback, has nothing to resume it: the stream fails per
``failStrategy``. A pause on trailers is ignored. ``proxy_close_stream`` ends
the stream with 503.

A module failure (``_vm.GuestFailure``) is contained per ``failStrategy``:
``FAIL_CLOSE`` answers 503 (``x-plait-reason: wasm filter NAME failed``),
``FAIL_OPEN`` skips the module for the rest of the stream. Only the hooks whose
callbacks the module exports exist on the class (:func:`filter_class`), so the
chain skips the others at no cost.
"""

from __future__ import annotations

from plait.sdk import (
    Buffer,
    Continue,
    FilterResult,
    Headers,
    HookResult,
    HttpFilter,
    LocalReply,
    Pending,
    StreamContext,
)

from ._abi import BufferType
from ._plugin import WasmPlugin
from ._state import StreamState
from ._vm import GuestFailure, WasmVM
from ._waiting import dispatched

__all__ = ["WasmFilter", "filter_class"]

_CALLBACKS = {
    "on_request_headers": "proxy_on_request_headers",
    "on_request_data": "proxy_on_request_body",
    "on_request_trailers": "proxy_on_request_trailers",
    "on_response_headers": "proxy_on_response_headers",
    "on_response_data": "proxy_on_response_body",
    "on_response_trailers": "proxy_on_response_trailers",
}


_BODY_OF = {
    "proxy_on_request_headers": "proxy_on_request_body",
    "proxy_on_response_headers": "proxy_on_response_body",
}


class _Stuck(Exception):
    pass


class WasmFilter(HttpFilter):
    """One stream's view of a :class:`~._plugin.WasmPlugin`."""

    __slots__ = ("_plugin", "_skip", "_state", "_vm")

    def __init__(self, plugin: WasmPlugin) -> None:
        self._plugin = plugin
        self._vm: WasmVM | None = None
        self._state: StreamState | None = None
        self._skip = False

    def _stream(self, ctx: StreamContext) -> tuple[WasmVM, StreamState]:
        state, vm = self._state, self._vm
        if state is None or vm is None:
            vm = self._vm = self._plugin.vm_for_stream()
            state = self._state = vm.new_stream(ctx)
        return vm, state

    def _failed(self, error: Exception) -> LocalReply | None:
        plugin = self._plugin
        plugin.failed(error)
        if plugin.config.fail_open:
            self._skip = True
            return None
        return LocalReply(503, b"wasm filter failed\n", reason=f"wasm filter {plugin.name} failed")

    def _decide(
        self, s: StreamState, direction: int, action: int, end_stream: bool, body_next: bool = True
    ) -> FilterResult:
        if s.reply is not None:
            return s.reply
        if s.closed:
            return LocalReply(503, reason=f"wasm filter {self._plugin.name} closed the stream")
        if action == 0 or s.resumed[direction]:
            s.resumed[direction] = False
            return None
        if not end_stream and body_next:
            return Buffer(self._plugin.config.max_buffer)
        raise _Stuck("paused with nothing to resume it")

    def _callouts(
        self, vm: WasmVM, s: StreamState, direction: int, action: int
    ) -> Pending[FilterResult] | None:
        paused = action != 0 and not s.resumed[direction]

        def decide() -> FilterResult:
            try:
                return self._decide(s, direction, 1, True)
            except _Stuck as exc:
                return self._failed(exc)

        return dispatched(vm, s, paused, decide, self._failed)

    def _heads(self, ctx: StreamContext, name: str, n: int, end_stream: bool) -> HookResult:
        if self._skip:
            return None
        try:
            vm, s = self._stream(ctx)
            action = vm.call(name, s, s.id, n, int(end_stream))
            direction = 0 if name == "proxy_on_request_headers" else 1
            if vm.outbox:  # HTTP calls dispatched: the stream may wait for them
                waiting = self._callouts(vm, s, direction, action)
                if waiting is not None:
                    return waiting
            # paused headers are resumed by the body callback at the end of the body
            body_next = vm.has(_BODY_OF[name])
            return self._decide(s, direction, action, end_stream, body_next)
        except (GuestFailure, _Stuck) as exc:
            return self._failed(exc)

    def _body(self, ctx: StreamContext, kind: int, chunk: bytes, end_stream: bool) -> HookResult:
        if self._skip:
            return None
        try:
            vm, s = self._stream(ctx)
            s.body, s.body_type, s.body_end = chunk, kind, end_stream
            name = "proxy_on_request_body" if kind == 0 else "proxy_on_response_body"
            try:
                action = vm.call(name, s, s.id, len(chunk), int(end_stream))
            finally:
                body, s.body = s.body, None
            if vm.outbox:  # HTTP calls dispatched: the stream may wait for them
                waiting = self._callouts(vm, s, kind, action)
                if waiting is not None:
                    return waiting
            result = self._decide(s, kind, action, end_stream)
        except (GuestFailure, _Stuck) as exc:
            return self._failed(exc)
        if result is None and body is not chunk and body is not None:
            return Continue(data=body)
        return result

    def _trailers(self, ctx: StreamContext, name: str, trailers: Headers) -> FilterResult:
        if self._skip:
            return None
        try:
            vm, s = self._stream(ctx)
            if name == "proxy_on_request_trailers":
                s.request_trailers = trailers
            else:
                s.response_trailers = trailers
            vm.call(name, s, s.id, len(trailers))
        except GuestFailure as exc:
            return self._failed(exc)
        return s.reply

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> HookResult:
        return self._heads(ctx, "proxy_on_request_headers", len(headers) + 4, end_stream)

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> HookResult:
        return self._body(ctx, BufferType.HTTP_REQUEST_BODY, chunk, end_stream)

    def on_request_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        return self._trailers(ctx, "proxy_on_request_trailers", trailers)

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> HookResult:
        return self._heads(ctx, "proxy_on_response_headers", len(headers) + 1, end_stream)

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> HookResult:
        return self._body(ctx, BufferType.HTTP_RESPONSE_BODY, chunk, end_stream)

    def on_response_trailers(self, ctx: StreamContext, trailers: Headers) -> FilterResult:
        return self._trailers(ctx, "proxy_on_response_trailers", trailers)

    def on_stream_complete(self, ctx: StreamContext) -> None:
        vm, s = self._vm, self._state
        self._state = None
        if vm is None or s is None:
            return
        if vm.broken is not None:
            vm.contexts.pop(s.id, None)
            return
        try:
            vm.end_stream(s)
        except GuestFailure as exc:
            self._plugin.failed(exc)


def filter_class(plugin: WasmPlugin) -> type[WasmFilter]:
    """A :class:`WasmFilter` subclass with only the hooks whose callbacks the module
    exports (the others are the base :class:`~plait.sdk.HttpFilter`'s, which the chain
    skips)."""
    exports = plugin.compiled.exports
    missing = {
        hook: getattr(HttpFilter, hook) for hook, cb in _CALLBACKS.items() if cb not in exports
    }
    name = f"WasmFilter[{plugin.name}]"
    return type(name, (WasmFilter,), {"__slots__": (), **missing})
