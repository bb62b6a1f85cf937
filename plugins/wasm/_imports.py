"""What a module may import, and how the host's functions are linked to it.

A module must find every import it declares or it does not instantiate, and
SDK modules import far more than they call (a Rust SDK filter imports every
host function of its SDK). So the host defines:

* under ``env``, every Proxy-Wasm host function (``_abi.ENV_SIGNATURES``), each
  checked against the type the spec gives it;
* under both ``wasi_snapshot_preview1`` and ``wasi_unstable`` (the AssemblyScript
  SDK uses the latter), every WASI preview1 function: the ones SDK runtimes use
  are implemented (``_wasi.py``), any other returns ``ENOSYS`` with the type the
  module declares.

Linking defines only the functions the module imports (the linker is built per
instance, after a trap too, so it is kept small). An import from any other
module, or of a known function with another type, is refused when the module
is loaded, naming the import.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Final

import wasmtime

from . import _fast as fast
from ._abi import ENV_SIGNATURES, Status
from ._loggate import HOST_MODULE, LogGate, install
from ._memory import MemoryFault

__all__ = ["WASI_MODULES", "WASI_SIGNATURES", "check_imports", "link"]

WASI_MODULES: Final = ("wasi_snapshot_preview1", "wasi_unstable")
ENOSYS: Final = 52
EFAULT: Final = 21
INVALID_MEMORY_ACCESS: Final = int(Status.INVALID_MEMORY_ACCESS)

_I = "i32"
WASI_SIGNATURES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "fd_write": ((_I, _I, _I, _I), (_I,)),
    "fd_read": ((_I, _I, _I, _I), (_I,)),
    "fd_seek": ((_I, "i64", _I, _I), (_I,)),
    "fd_close": ((_I,), (_I,)),
    "fd_fdstat_get": ((_I, _I), (_I,)),
    "fd_fdstat_set_flags": ((_I, _I), (_I,)),
    "fd_prestat_get": ((_I, _I), (_I,)),
    "fd_prestat_dir_name": ((_I, _I, _I), (_I,)),
    "environ_get": ((_I, _I), (_I,)),
    "environ_sizes_get": ((_I, _I), (_I,)),
    "args_get": ((_I, _I), (_I,)),
    "args_sizes_get": ((_I, _I), (_I,)),
    "clock_time_get": ((_I, "i64", _I), (_I,)),
    "clock_res_get": ((_I, _I), (_I,)),
    "random_get": ((_I, _I), (_I,)),
    "sched_yield": ((), (_I,)),
    "poll_oneoff": ((_I, _I, _I, _I), (_I,)),
    "proc_exit": ((_I,), ()),
}


def _types(ft: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ft.params), tuple(str(r) for r in ft.results)


def _func_type(sig: tuple[tuple[str, ...], tuple[str, ...]]) -> wasmtime.FuncType:
    val = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
    return wasmtime.FuncType([val[p] for p in sig[0]], [val[r] for r in sig[1]])


def _expected(module: str, name: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    if module == "env":
        return ENV_SIGNATURES.get(name)
    return WASI_SIGNATURES.get(name)


def check_imports(module: wasmtime.Module) -> str | None:
    """What is wrong with the module's imports, or ``None``."""
    for imp in module.imports:
        where = f"import {imp.module}.{imp.name}"
        if imp.module not in ("env", *WASI_MODULES):
            return f"{where}: plait's host provides only env and WASI preview1 imports"
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType):
            return f"{where}: expected a function, the module imports a {type(ty).__name__}"
        want = _expected(imp.module, imp.name or "")
        if imp.module == "env" and want is None:
            return f"{where}: not a Proxy-Wasm host function"
        if want is not None and _types(ty) != want:
            return f"{where}: the ABI's type is {want}, the module declares {_types(ty)}"
    return None


def _nosys(results: tuple[str, ...]) -> Callable[..., Any]:
    if results:
        return lambda *_: ENOSYS
    return lambda *_: None


def link(
    linker: wasmtime.Linker,
    module: wasmtime.Module,
    host: Any,
    gate: Callable[[], wasmtime.Module],
) -> LogGate | None:
    """Define on ``linker`` every function ``module`` imports, bound to ``host``'s methods
    (named as the import; a WASI method is ``wasi_<name>``). Host methods take the caller
    first (it is the store inside a host call).

    The functions hold ``host`` weakly: the instance's store (which ``host`` owns) keeps
    them, and a strong reference back would keep every replaced instance alive.

    With the fast crossings, an imported ``proxy_log`` goes through the gate of
    ``_loggate.py`` (the module ``gate()`` returns; the gate is returned, to follow the
    logger's level; else ``None``)."""
    ref = weakref.ref(host)
    gated = False
    for imp in module.imports:
        name = imp.name or ""
        ty = imp.type
        assert isinstance(ty, wasmtime.FuncType)  # check_imports ran at load
        sig = _expected(imp.module, name) or _types(ty)
        attr = name if imp.module == "env" else f"wasi_{name}"
        fn = getattr(type(host), attr, None)
        if fn is None:
            linker.define_func(imp.module, name, _func_type(sig), _nosys(sig[1]))
            continue
        fault = (INVALID_MEMORY_ACCESS if imp.module == "env" else EFAULT) if sig[1] else None
        if fast.AVAILABLE:
            where = imp.module
            if where == "env" and name == "proxy_log":
                where, gated = HOST_MODULE, True
            fast.define(linker, where, name, _func_type(sig), sig, _fast_guard(fn, ref, fault))
        else:
            linker.define_func(imp.module, name, _func_type(sig), _guard(fn, ref, fault), True)
    return install(linker, host.store, host.log, gate()) if gated else None


def _guard(fn: Callable[..., Any], ref: weakref.ref[Any], fault: int | None) -> Callable[..., Any]:
    """``fn`` called on the host ``ref`` names, answering a bad guest pointer with the ABI's
    error instead of a trap."""

    def call(caller: Any, *args: Any) -> Any:
        try:
            return fn(ref(), caller, *args)
        except MemoryFault:
            return fault

    return call


def _fast_guard(
    fn: Callable[..., Any], ref: weakref.ref[Any], fault: int | None
) -> Callable[..., Any]:
    """:func:`_guard` for ``_fast``'s crossings, which pass no caller: the host's own store
    is the caller's context (``_fast.py``)."""

    def call(*args: Any) -> Any:
        host: Any = ref()  # alive: it owns the store the call runs in
        try:
            return fn(host, host.store, *args)
        except MemoryFault:
            return fault

    return call
