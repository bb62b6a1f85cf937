"""The fast crossings (``_fast.py``) and in-place memory access (``_memory.py``) against
real wasmtime instances: values both ways, re-entry, memory growth inside a host call,
and the premise that a host call's caller context is its store's."""

from __future__ import annotations

import ctypes

import pytest
import wasmtime

from plait.plugins.wasm import _fast as fast
from plait.plugins.wasm._engine import engine
from plait.plugins.wasm._memory import GuestMemory, MemoryFault


def test_the_installed_wasmtime_has_the_fast_call_path() -> None:
    """The fast path binds wasmtime-py's C entry points; with a wasmtime-py that lacks
    them the host falls back to the public API, several times slower per call."""
    assert fast.AVAILABLE, "wasmtime-py without the C bindings _fast.py expects"


I32, I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

MODULE = """
(module
  (import "env" "h" (func $h (param i32 i64 i32) (result i32)))
  (import "env" "again" (func $again (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "call_h") (param $a i32) (param $b i32) (result i32)
    (call $h (local.get $a) (i64.extend_i32_s (local.get $b)) (i32.const -1)))
  (func (export "nest") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1000))
      (else (i32.add (local.get $n) (call $again (i32.sub (local.get $n) (i32.const 1)))))))
  (func (export "grow") (param $pages i32) (result i32) (memory.grow (local.get $pages))))
"""


class _Host:
    def __init__(self) -> None:
        self.store = wasmtime.Store(engine())
        self.store.set_epoch_deadline(1000)  # the engine interrupts at the deadline
        self.seen: list[tuple[int, ...]] = []
        self.mem = GuestMemory()
        self.nest: fast.GuestCall | None = None
        self.grow: fast.GuestCall | None = None
        linker = wasmtime.Linker(engine())
        ty_h = wasmtime.FuncType([I32, I64, I32], [I32])
        fast.define(linker, "env", "h", ty_h, (("i32", "i64", "i32"), ("i32",)), self.h)
        ty_again = wasmtime.FuncType([I32], [I32])
        fast.define(linker, "env", "again", ty_again, (("i32",), ("i32",)), self.again)
        instance = linker.instantiate(self.store, wasmtime.Module(engine(), MODULE))
        exports = instance.exports(self.store)
        self.calls = {
            name: fast.guest_call(exports[name], self.store)  # type: ignore[arg-type]
            for name in ("call_h", "nest", "grow")
        }
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.mem.bind(memory, self.store)

    def h(self, a: int, b: int, c: int) -> int:
        self.seen.append((a, b, c))
        if a == 7:  # grow by a page inside the host call, then use the new page
            self.calls["grow"](self.store, 1)
            self.mem.write(self.store, 65536 + 100, b"grown")
            return int(self.mem.read(self.store, 65536 + 100, 5) == b"grown")
        if a == 9:
            raise RuntimeError("host failure")
        return a + b

    def again(self, n: int) -> int:
        return self.calls["nest"](self.store, n)


def test_values_cross_both_ways_signed() -> None:
    host = _Host()
    assert host.calls["call_h"](host.store, 5, -3) == 2
    assert host.seen == [(5, -3, -1)]  # i64 sign-extended, i32 -1 as signed
    assert host.calls["call_h"](host.store, 0x7FFFFFFF, 1) == -0x80000000  # i32 wraps


def test_a_guest_function_reentered_from_a_host_call_gets_its_own_buffer() -> None:
    host = _Host()
    # nest(n) = n + again(n-1) = n + nest(n-1) ... = n(n+1)/2 + 1000, 5 levels deep
    assert host.calls["nest"](host.store, 5) == 15 + 1000
    assert host.calls["nest"](host.store, 3) == 6 + 1000


def test_memory_grown_inside_a_host_call_is_reachable_and_bounds_are_kept() -> None:
    host = _Host()
    with pytest.raises(MemoryFault):
        host.mem.read(host.store, 65536 + 100, 5)  # one page: outside
    assert host.calls["call_h"](host.store, 7, 0) == 1
    assert host.mem.read(host.store, 65536 + 100, 5) == b"grown"
    with pytest.raises(MemoryFault):
        host.mem.write(host.store, 2 * 65536 - 2, b"abc")  # crosses the end
    assert host.mem.read(host.store, 2 * 65536 - 2, 2) == b"\0\0"


def test_a_host_exception_traps_the_guest_and_reaches_the_caller() -> None:
    host = _Host()
    with pytest.raises(RuntimeError, match="host failure"):
        host.calls["call_h"](host.store, 9, 0)
    assert host.calls["call_h"](host.store, 1, 1) == 2  # the buffers are still usable


def test_the_caller_context_of_a_host_call_is_the_store_context() -> None:
    # _fast hands host functions their instance's store instead of the caller: this is
    # what makes that the same thing.
    store = wasmtime.Store(engine())
    store.set_epoch_deadline(1000)
    linker = wasmtime.Linker(engine())
    seen: list[int | None] = []

    def probe(caller: wasmtime.Caller, a: int) -> int:
        seen.append(ctypes.cast(caller._context(), ctypes.c_void_p).value)
        return a

    linker.define_func("env", "h", wasmtime.FuncType([I32], [I32]), probe, access_caller=True)
    text = '(module (import "env" "h" (func $h (param i32) (result i32)))'
    text += ' (func (export "f") (result i32) (call $h (i32.const 3))))'
    f = linker.instantiate(store, wasmtime.Module(engine(), text)).exports(store)["f"]
    assert isinstance(f, wasmtime.Func)
    assert f(store) == 3
    assert seen == [fast.context_of(store)]
