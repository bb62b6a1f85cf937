"""Fast crossings between Python and the guest, through wasmtime's unchecked C API.

wasmtime-py's public API re-reads a function's type and converts every value
through ``Val`` on each crossing: measured here, ~6 µs for a call into the guest
without arguments, ~2 µs more per argument, and as much for each host call. A
request through a filter makes ~6 guest callbacks and as many host calls, so
that alone would cost a few hundred µs. This module crosses with raw values
instead (``wasmtime_func_call_unchecked`` and
``wasmtime_linker_define_func_unchecked``): the ABI's functions take only
``i32``/``i64``, so the types are known when the function is bound and nothing
is converted per call.

Every C function is bound here with plain integer (``c_void_p``) arguments, so a
crossing converts no ctypes pointer objects: a guest call packs its arguments
into a raw-value buffer with one :func:`struct.pack_into` (the trap slot after
them zeroed in the same step) and reads the result and the trap back with one
``unpack_from``; a host call unpacks its arguments from the raw array with one
``unpack_from`` (on a ctypes array at its address: no copy, no foreign call) and
writes its result in place. Buffers are reused: a call
takes one from its function's free list and gives it back, so a guest function
re-entered from a host call (an allocator a host call uses) gets its own.

Inside a host call the caller's context is the store's own context (the same
``wasmtime_context_t``; ``tests/plugins/wasm/test_fast.py`` checks it), so host
functions are handed the store their instance lives in.

It uses wasmtime-py's private ``_ffi`` bindings. When they are not what this
module expects (another wasmtime-py), :data:`AVAILABLE` is false and the host
uses the public API, slower but the same.

Errors: a Python exception in a host function becomes a trap (the guest stops);
the call that entered the guest then raises that exception, else the
:class:`wasmtime.Trap`.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import threading
from collections.abc import Callable
from typing import Any, Final

import wasmtime

__all__ = [
    "AVAILABLE",
    "GuestCall",
    "context_of",
    "define",
    "guest_call",
    "memory_data",
    "memory_size",
    "set_deadline",
]

_P = ctypes.c_void_p
_RAW_SIZE: Final = 16
"""``sizeof(wasmtime_val_raw_t)``."""


def _c_function(name: str, restype: Any, argtypes: list[Any]) -> Any:
    """Our own binding of a C function of the library (not wasmtime-py's Python wrapper)."""
    fn = ffi.dll[name]
    fn.restype, fn.argtypes = restype, argtypes
    return fn


_CALLBACK: Final = ctypes.CFUNCTYPE(ctypes.c_size_t, _P, _P, _P, ctypes.c_size_t)
"""``wasmtime_func_unchecked_callback_t`` with integer arguments."""

try:
    from wasmtime import _ffi as ffi

    if ctypes.sizeof(ffi.wasmtime_val_raw_t) != _RAW_SIZE:  # pragma: no cover
        raise AttributeError("wasmtime_val_raw_t")
    _ERROR_PTR: Any = ctypes.POINTER(ffi.wasmtime_error_t)
    _TRAP_PTR: Any = ctypes.POINTER(ffi.wasm_trap_t)
    _CALL: Any = _c_function("wasmtime_func_call_unchecked", _P, [_P, _P, _P, ctypes.c_size_t, _P])
    _DEFINE: Any = _c_function(
        "wasmtime_linker_define_func_unchecked",
        _P,
        [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, _P, _CALLBACK,
         _P, _P],
    )  # fmt: skip
    _SET_DEADLINE: Any = _c_function(
        "wasmtime_context_set_epoch_deadline", None, [_P, ctypes.c_uint64]
    )
    memory_data: Callable[[int, int], int] = _c_function("wasmtime_memory_data", _P, [_P, _P])
    """``(context, memory) -> base address`` (addresses as ints, :func:`context_of`)."""
    memory_size: Callable[[int, int], int] = _c_function(
        "wasmtime_memory_data_size", ctypes.c_size_t, [_P, _P]
    )
    """``(context, memory) -> size in bytes``."""
    AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - another wasmtime-py
    AVAILABLE = False

GuestCall = Callable[..., int]
"""``call(store, *i32_args) -> i32`` (0 for a function without result)."""

_local = threading.local()  # .pending: what a host function raised in this thread
_hosts: dict[int, tuple[Callable[..., Any], Any, Any, bool]] = {}
_keys = itertools.count(1)
_TRAP_MESSAGE: Final = "host function raised"
_I32: Final = struct.Struct("<i")


def context_of(store: wasmtime.Store) -> int:
    """The address of ``store``'s ``wasmtime_context_t`` (fixed for the store's life)."""
    return ctypes.cast(store._context(), _P).value or 0


def set_deadline(context: int, ticks: int) -> None:
    """The store's epoch deadline, ``ticks`` after the engine's current epoch."""
    _SET_DEADLINE(context, ticks)


def _raise(err: int, trap: int) -> None:
    # A trap raised by a host function comes back as an error, others as a trap.
    exc: Exception = (
        wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR))
        if err
        else wasmtime.Trap._from_ptr(ctypes.cast(trap, _TRAP_PTR))
    )
    cause: BaseException | None = getattr(_local, "pending", None)
    if cause is not None:
        _local.pending = None
        raise cause from exc
    raise exc


def guest_call(func: wasmtime.Func, store: wasmtime.Store) -> GuestCall:
    """``func`` (params and result all ``i32``) as a fast callable."""
    ty = func.type(store)
    nparams, nresults = len(ty.params), len(ty.results)
    width = max(nparams, nresults, 1)
    context = context_of(store)
    func_addr = ctypes.addressof(func._func)
    trap_at = _RAW_SIZE * width
    # each argument as 8 bytes of its 16-byte slot (an i32 is its low 4 bytes, as
    # wasmtime reads it), then the trap out-pointer, zeroed
    pack = struct.Struct(f"<{'q8x' * nparams}{trap_at - _RAW_SIZE * nparams}xQ").pack_into
    unpack = struct.Struct(f"<i{trap_at - 4}xQ").unpack_from
    size = trap_at + 8
    free: list[tuple[Any, int]] = []

    def call(store: Any, *args: int) -> int:
        slot = free.pop() if free else _buffer(size)
        buf, addr = slot
        pack(buf, 0, *args, 0)
        err = _CALL(context, func_addr, addr, width, addr + trap_at)
        result, trap = unpack(buf)
        free.append(slot)
        if err or trap:
            _raise(err or 0, trap)
        _ = func  # the Func (and its store) live as long as the callable
        return result if nresults else 0

    return call


def _buffer(size: int) -> tuple[Any, int]:
    buf = ctypes.create_string_buffer(size)
    return buf, ctypes.addressof(buf)


def _trampoline(env: int, caller: int, raw: int, count: int) -> int:
    fn, unpack, array, has_result = _hosts[env]
    try:
        result = fn(*unpack(array.from_address(raw))) if array is not None else fn()
        if has_result:
            ctypes.c_int32.from_address(raw).value = result
        return 0
    except BaseException as exc:
        _local.pending = exc
        trap = wasmtime.Trap(_TRAP_MESSAGE)._consume()
        value: int = ctypes.cast(trap, _P).value or 0
        return value


def _finalize(env: int | None, hosts: dict[int, Any] = _hosts) -> None:
    # (``hosts`` bound now: at interpreter exit the module's globals may be gone already)
    hosts.pop(env or 0, None)


# The C callbacks. Stores and linkers hold pointers to them and may be deleted while the
# interpreter exits, after this module's globals are gone: they are never freed.
_TRAMPOLINE: Any = _CALLBACK(_trampoline)
_FINALIZER: Any = ctypes.CFUNCTYPE(None, _P)(_finalize)
for _callback in (_TRAMPOLINE, _FINALIZER):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_callback))


def define(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    ty: wasmtime.FuncType,
    sig: tuple[tuple[str, ...], tuple[str, ...]],
    fn: Callable[..., Any],
) -> None:
    """Define host function ``module.name`` calling ``fn(*args)`` with raw values (``i32``
    as signed ints, ``i64`` as signed ints)."""
    key = next(_keys)
    fmt = "<" + "".join("q8x" if p == "i64" else "i12x" for p in sig[0])
    array = ctypes.c_char * (_RAW_SIZE * len(sig[0])) if sig[0] else None
    _hosts[key] = (fn, struct.Struct(fmt).unpack_from, array, bool(sig[1]))
    m, n = module.encode(), name.encode()
    linker_ptr = ctypes.cast(linker.ptr(), _P).value
    ty_ptr = ctypes.cast(ty.ptr(), _P).value
    err = _DEFINE(linker_ptr, m, len(m), n, len(n), ty_ptr, _TRAMPOLINE, key, _FINALIZER)
    if err:
        _hosts.pop(key, None)
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR))
