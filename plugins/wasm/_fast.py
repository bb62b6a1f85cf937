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
import threading
from collections.abc import Callable
from typing import Any, Final

import wasmtime

__all__ = [
    "AVAILABLE",
    "MEMORY_DATA",
    "MEMORY_SIZE",
    "CallerStore",
    "GuestCall",
    "define",
    "guest_call",
]


def _c_function(name: str, restype: Any, argtypes: list[Any]) -> Any:
    """Our own binding of a C function of the library (not wasmtime-py's Python wrapper)."""
    fn = ffi.dll[name]
    fn.restype, fn.argtypes = restype, argtypes
    return fn


try:
    from wasmtime import _ffi as ffi

    _RAW: Any = ffi.wasmtime_val_raw_t
    _DEFINE: Any = ffi.wasmtime_linker_define_func_unchecked
    _CALLBACK: Any = ffi.wasmtime_func_unchecked_callback_t
    _TRAP_PTR: Any = ctypes.POINTER(ffi.wasm_trap_t)
    _CTX: Any = ctypes.POINTER(ffi.wasmtime_context_t)
    _CALL: Any = _c_function(
        "wasmtime_func_call_unchecked",
        ctypes.POINTER(ffi.wasmtime_error_t),
        [_CTX, ctypes.POINTER(ffi.wasmtime_func_t), ctypes.POINTER(_RAW), ctypes.c_size_t,
         ctypes.POINTER(_TRAP_PTR)],
    )  # fmt: skip
    _CALLER_CONTEXT: Any = _c_function(
        "wasmtime_caller_context", _CTX, [ctypes.POINTER(ffi.wasmtime_caller_t)]
    )
    MEMORY_DATA: Any = _c_function(
        "wasmtime_memory_data", ctypes.c_void_p, [_CTX, ctypes.POINTER(ffi.wasmtime_memory_t)]
    )
    """``(context, byref(memory._memory)) -> base address``."""
    MEMORY_SIZE: Any = _c_function(
        "wasmtime_memory_data_size", ctypes.c_size_t, [_CTX, ctypes.POINTER(ffi.wasmtime_memory_t)]
    )
    """``(context, byref(memory._memory)) -> size in bytes``."""
    AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - another wasmtime-py
    AVAILABLE = False

GuestCall = Callable[..., int]
"""``call(store, *i32_args) -> i32`` (0 for a function without result)."""

_local = threading.local()  # .pending: what a host function raised in this thread
_hosts: dict[int, tuple[Callable[..., Any], tuple[bool, ...], bool]] = {}
_keys = itertools.count(1)
_TRAP_MESSAGE: Final = "host function raised"


class CallerStore:
    """What the public API takes as a store, inside an unchecked host call."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def _context(self) -> Any:
        return self._ctx


def _raise(err: Any, trap: Any) -> None:
    # A trap raised by a host function comes back as an error, others as a trap.
    exc: Exception = wasmtime.WasmtimeError._from_ptr(err) if err else wasmtime.Trap._from_ptr(trap)
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
    array = _RAW * width
    ref = ctypes.byref(func._func)  # the Func object is kept alive by the closure

    def call(store: Any, *args: int) -> int:
        buf = array()
        for i, value in enumerate(args):
            buf[i].i32 = value
        trap = _TRAP_PTR()
        err = _CALL(store._context(), ref, buf, width, ctypes.byref(trap))
        if err or trap:
            _raise(err, trap)
        _ = func
        return buf[0].i32 if nresults else 0

    return call


def _trampoline(env: int | None, caller: Any, raw: Any, count: int) -> int:
    fn, wide, has_result = _hosts[env or 0]
    try:
        args = [raw[i].i64 if w else raw[i].i32 for i, w in enumerate(wide)]
        result = fn(CallerStore(_CALLER_CONTEXT(caller)), *args)
        if has_result:
            raw[0].i32 = result
        return 0
    except BaseException as exc:
        _local.pending = exc
        trap = wasmtime.Trap(_TRAP_MESSAGE)._consume()
        value: int = ctypes.cast(trap, ctypes.c_void_p).value or 0
        return value


def _finalize(env: int | None, hosts: dict[int, Any] = _hosts) -> None:
    # (``hosts`` bound now: at interpreter exit the module's globals may be gone already)
    hosts.pop(env or 0, None)


# The C callbacks. Stores and linkers hold pointers to them and may be deleted while the
# interpreter exits, after this module's globals are gone: they are never freed.
_TRAMPOLINE: Any = _CALLBACK(_trampoline) if AVAILABLE else None
_FINALIZER: Any = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_finalize)
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
    """Define host function ``module.name`` calling ``fn(store, *args)`` with raw values."""
    key = next(_keys)
    _hosts[key] = (fn, tuple(p == "i64" for p in sig[0]), bool(sig[1]))
    m, n = module.encode(), name.encode()
    err = _DEFINE(
        linker.ptr(),
        ctypes.create_string_buffer(m),
        len(m),
        ctypes.create_string_buffer(n),
        len(n),
        ty.ptr(),
        _TRAMPOLINE,
        key,
        _FINALIZER,
    )
    if err:
        _hosts.pop(key, None)
        raise wasmtime.WasmtimeError._from_ptr(err)
