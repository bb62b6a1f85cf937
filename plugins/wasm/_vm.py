"""One instance of a Proxy-Wasm module: its store, its contexts, its guest calls.

A :class:`WasmVM` is one wasmtime instance in its own store, with the host
functions (``_hostcalls.py``, ``_stubs.py``, ``_wasi.py``) bound to it. Starting
it follows the spec's lifecycle: ``_initialize`` (then ``main(0, 0)`` if the
module has it) or else ``_start``; the root context (``proxy_on_context_create``
with parent 0); ``proxy_on_vm_start`` with the VM configuration and
``proxy_on_configure`` with the plugin configuration, either of which may refuse
(:class:`StartRefused`).

Every guest call (:meth:`WasmVM.call`) runs with the effective context set to
the callback's, and with an epoch deadline: the engine's ticker (``_engine.py``)
interrupts a callback that runs longer than the CPU bound. Setting the deadline
is a call into wasmtime, so it is set a quarter of the bound further
(:attr:`WasmVM.window`) and kept for the next callbacks while more than the
bound is left of it (the ticker's count, ``_engine.EPOCH``, says how much): each
callback starts with at least the bound and at most 1.25 times it (plus a tick)
before it is interrupted. The store's limits
cap the instance's linear memory (a ``memory.grow`` past it fails in the guest).
Any failure inside a call (a trap, the deadline, ``proc_exit``, a host function
that raised) marks the instance broken for good (an SDK's state is not
trustworthy after a trap): the call raises :class:`GuestFailure`, and so does
every later call; the plugin replaces the instance (``_plugin.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import wasmtime

from plait.sdk import StreamContext
from plait.sdk.mesh import MeshResponse

from . import _fast as fast
from ._callout import Callout
from ._engine import EPOCH, EPOCH_TICK, CompiledModule, engine, gate_module, guest_thread
from ._fast import GuestCall
from ._imports import link
from ._io import IoCalls
from ._memory import GuestMemory, MemoryFault
from ._metrics import ModuleMetrics
from ._properties import PluginInfo
from ._state import RootState, StreamState
from ._stubs import StubCalls
from ._wasi import ProcExit, WasiCalls

__all__ = ["GuestFailure", "StartRefused", "VmSettings", "WasmVM"]

ROOT_ID: Final = 1
_STREAM_ENDS: Final = ("proxy_on_done", "proxy_on_log", "proxy_on_delete")
START_FACTOR: Final = 20
"""The CPU bound of the start-up calls, in multiples of the per-callback bound."""


class GuestFailure(Exception):
    """The module failed inside a callback (or had failed before); the instance is broken."""


class StartRefused(Exception):
    """The module refused its configuration (``proxy_on_vm_start``/``proxy_on_configure``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field
        """The config field with the refused configuration."""


@dataclass(frozen=True, slots=True)
class VmSettings:
    info: PluginInfo
    plugin_config: bytes
    vm_config: bytes
    environ: tuple[bytes, ...]
    memory_limit: int
    """Bytes of linear memory the instance may have."""
    cpu_limit: float
    """Seconds one callback may run."""
    log: logging.Logger


def describe(exc: BaseException) -> str:
    """What went wrong in the guest, in one line."""
    if isinstance(exc, wasmtime.Trap):
        if exc.trap_code is wasmtime.TrapCode.INTERRUPT:
            return "exceeded its CPU time limit per callback"
        first = str(exc.message).splitlines()[0] if exc.message else "trap"
        return f"trapped: {first}"
    if isinstance(exc, ProcExit):
        return str(exc)
    if isinstance(exc, MemoryFault):
        return f"memory fault: {exc}"
    return f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _bind(func: wasmtime.Func, store: wasmtime.Store) -> GuestCall:
    """A guest function as ``call(store, *args) -> int``: the fast path when its types
    are all ``i32`` (every Proxy-Wasm callback), else wasmtime-py's public call."""
    ty = func.type(store)
    if fast.AVAILABLE and all(str(t) == "i32" for t in (*ty.params, *ty.results)):
        return fast.guest_call(func, store)

    def call(store: Any, *args: int) -> int:
        result = func(store, *args)
        return result if isinstance(result, int) else 0

    return call


class WasmVM(IoCalls, StubCalls, WasiCalls):
    """One instance of a module (not thread-safe: one event loop uses it)."""

    def __init__(self, compiled: CompiledModule, settings: VmSettings) -> None:
        self.compiled = compiled
        self.settings = settings
        self.info = settings.info
        self.log = settings.log
        self.environ = settings.environ
        self.mem = GuestMemory()
        self.module_metrics = ModuleMetrics()
        self.callout: MeshResponse | None = None
        """The response ``proxy_on_http_call_response`` is about, while it runs."""
        self.outbox: list[Callout] = []
        """HTTP calls dispatched and not started yet (``_callout.py``)."""
        self.next_token = 1
        self.tick_period = 0.0
        self.on_tick_period: Callable[[], None] | None = None
        self.ready_queues: list[int] = []
        self.root = RootState(ROOT_ID, settings.plugin_config, settings.vm_config)
        self.contexts: dict[int, RootState | StreamState] = {ROOT_ID: self.root}
        self.current: RootState | StreamState | None = None
        self.broken: str | None = None
        self.next_id = ROOT_ID + 1
        self.ticks = max(1, math.ceil(settings.cpu_limit / EPOCH_TICK))
        self.window = self.ticks + max(1, self.ticks // 4)
        """What a callback's deadline is set to when it is set: a few ticks more than
        the bound, so the next callbacks can start under the same deadline."""
        self.deadline = 0
        """The epoch (:data:`EPOCH`'s count) at which the store's deadline is."""
        guest_thread()  # this thread makes the calls: its CPU time is what they are bound by
        self.store = wasmtime.Store(engine())
        self.store.set_limits(memory_size=settings.memory_limit)
        self.store.set_epoch_deadline(self.ticks)
        self.context = fast.context_of(self.store) if fast.AVAILABLE else 0
        linker = wasmtime.Linker(engine())
        self.log_gate = link(linker, compiled.module, self, gate_module)
        try:  # a start section (AssemblyScript) runs here
            instance = linker.instantiate(self.store, compiled.module)
        except (wasmtime.Trap, wasmtime.WasmtimeError, ProcExit) as exc:
            raise GuestFailure(f"instantiation {describe(exc)}") from exc
        exports = instance.exports(self.store)
        funcs: dict[str, GuestCall] = {}
        for name in compiled.exports:
            item = exports.get(name)
            if isinstance(item, wasmtime.Func):
                funcs[name] = _bind(item, self.store)
            elif isinstance(item, wasmtime.Memory) and name == "memory":
                self.mem.bind(item, self.store)
        self.mem.alloc = funcs.get("malloc") or funcs.get("proxy_on_memory_allocate")
        self.funcs = funcs
        self.stream_ends = tuple(n for n in _STREAM_ENDS if n in funcs)
        """The end-of-stream callbacks the module exports, in the spec's order."""

    def has(self, name: str) -> bool:
        return name in self.funcs

    def call(self, name: str, context: RootState | StreamState | None, *args: int) -> int:
        """Call export ``name`` (0 when the module lacks it) with ``context`` effective."""
        if self.broken is not None:
            raise GuestFailure(self.broken)
        fn = self.funcs.get(name)
        if fn is None:
            return 0
        self.current = context
        now = EPOCH[0]
        if self.deadline - now <= self.ticks:  # less than the bound may be left: set anew
            if self.context:
                fast.set_deadline(self.context, self.window)
            else:
                self.store.set_epoch_deadline(self.window)
            self.deadline = now + self.window
        try:
            return fn(self.store, *args)
        except Exception as exc:
            self.broken = f"{name} {describe(exc)}"
            raise GuestFailure(self.broken) from exc
        finally:
            self.current = None

    def call_within(
        self, ticks: int, name: str, context: RootState | StreamState | None, *args: int
    ) -> int:
        if self.broken is not None:
            raise GuestFailure(self.broken)
        fn = self.funcs.get(name)
        if fn is None:
            return 0
        self.current = context
        self.deadline = 0  # the next call sets its own
        if self.context:
            fast.set_deadline(self.context, ticks)
        else:
            self.store.set_epoch_deadline(ticks)
        try:
            return fn(self.store, *args)
        except Exception as exc:
            self.broken = f"{name} {describe(exc)}"
            raise GuestFailure(self.broken) from exc
        finally:
            self.current = None

    def start(self) -> None:
        """Initialize the module and its root context; raises :class:`GuestFailure` or
        :class:`StartRefused`."""
        ticks = self.ticks * START_FACTOR  # a language runtime's start-up may take longer
        if self.has("_initialize"):
            self.call_within(ticks, "_initialize", None)
            if self.has("main"):
                self.call_within(ticks, "main", None, 0, 0)
        elif self.has("_start"):
            self.call_within(ticks, "_start", None)
        root = self.root
        self.call("proxy_on_context_create", root, ROOT_ID, 0)
        if self.has("proxy_on_vm_start") and not self.call(
            "proxy_on_vm_start", root, ROOT_ID, len(root.vm_config)
        ):
            raise StartRefused("proxy_on_vm_start returned false", "vmConfig")
        if self.has("proxy_on_configure") and not self.call(
            "proxy_on_configure", root, ROOT_ID, len(root.plugin_config)
        ):
            raise StartRefused("proxy_on_configure returned false", "pluginConfig")

    def new_stream(self, ctx: StreamContext) -> StreamState:
        """A new stream context (``proxy_on_context_create`` under the root)."""
        context_id = self.next_id
        self.next_id += 1
        if self.log_gate is not None:
            self.log_gate.sync()
        stream = StreamState(context_id, ctx)
        self.contexts[context_id] = stream
        self.call("proxy_on_context_create", stream, context_id, ROOT_ID)
        return stream

    def end_stream(self, stream: StreamState) -> None:
        """``proxy_on_done``, ``proxy_on_log``, ``proxy_on_delete`` (those the module
        exports); forgets the context."""
        try:
            for name in self.stream_ends:
                self.call(name, stream, stream.id)
        finally:
            self.contexts.pop(stream.id, None)
