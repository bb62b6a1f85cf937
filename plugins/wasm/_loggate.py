"""A gate in wasm in front of ``proxy_log``: messages below the logger's level never
cross into Python.

SDKs log a lot at debug and trace level (the AssemblyScript SDK makes ten
``proxy_log`` calls per request), and the host drops those messages unless the
filter's logger is that verbose. Each call is a crossing into Python, the most
expensive thing a host call does, to learn nothing. So when the fast crossings
are available, ``env.proxy_log`` of the module is linked to this gate, a tiny
wasm function in the same store: a level below ``min_level`` (the lowest ABI
level the logger lets through) returns ``OK`` at once, any other call (and any
level outside the ABI's 0..5) goes on to the host's ``proxy_log``, which decides
as before. The module sees the same result either way.

``min_level`` follows the logger: the VM compares the logger's effective level
when a stream starts (:func:`sync`) and writes the gate's global only when it
changed, so a level set at run time applies from the next stream on. The gate
only ever drops a message the host would drop too (it knows the logger's level,
not ``logging.disable``, which the host still applies).
"""

from __future__ import annotations

import logging
from typing import Final

import wasmtime

from ._abi import LogLevel

__all__ = ["GATE_WAT", "HOST_MODULE", "LogGate", "install"]

HOST_MODULE: Final = "plait_host"
"""Where the host's own ``proxy_log`` is defined for the gate to import."""

_LEVELS: Final = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
"""The Python level of each ABI log level (trace .. critical)."""

GATE_WAT: Final = f"""
(module
  (import "{HOST_MODULE}" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (global $min (export "min_level") (mut i32) (i32.const 0))
  (func (export "proxy_log") (param $level i32) (param $ptr i32) (param $size i32) (result i32)
    (if (i32.and (i32.le_u (local.get $level) (i32.const {int(LogLevel.CRITICAL)}))
                 (i32.lt_u (local.get $level) (global.get $min)))
      (then (return (i32.const 0))))
    (call $log (local.get $level) (local.get $ptr) (local.get $size))))
"""


class LogGate:
    """The gate of one instance: its ``min_level`` global and the level it reflects."""

    __slots__ = ("_global", "_level", "_logger", "_store")

    def __init__(self, glob: wasmtime.Global, store: wasmtime.Store, logger: logging.Logger):
        self._global = glob
        self._store = store
        self._logger = logger
        self._level = -1

    def sync(self) -> None:
        """Make ``min_level`` reflect the logger's effective level (a wasmtime call only
        when it changed)."""
        level = self._logger.getEffectiveLevel()
        if level != self._level:
            self._level = level
            lowest = next((k for k, py in enumerate(_LEVELS) if py >= level), len(_LEVELS))
            self._global.set_value(self._store, wasmtime.Val.i32(lowest))


def install(
    linker: wasmtime.Linker, store: wasmtime.Store, logger: logging.Logger, module: wasmtime.Module
) -> LogGate:
    """Instantiate the gate ``module`` (:data:`GATE_WAT` compiled, ``_engine.gate_module``)
    in ``store`` (the host's ``proxy_log`` must be defined under :data:`HOST_MODULE`) and
    define it as ``env.proxy_log`` on ``linker``."""
    exports = linker.instantiate(store, module).exports(store)
    glob, func = exports["min_level"], exports["proxy_log"]
    assert isinstance(glob, wasmtime.Global) and isinstance(func, wasmtime.Func)
    linker.define(store, "env", "proxy_log", func)
    gate = LogGate(glob, store, logger)
    gate.sync()
    return gate
