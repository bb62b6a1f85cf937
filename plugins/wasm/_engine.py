"""The process's wasmtime engine, its epoch ticker, and the compiled-module cache.

One :class:`wasmtime.Engine` serves every Proxy-Wasm module of the process. It
runs with epoch interruption: a daemon thread increments the engine's epoch
for every :data:`EPOCH_TICK` seconds of *CPU time* the guest thread (the thread
that makes the modules' stores: the sidecar's event loop, :func:`guest_thread`)
has used, and each guest call gets a deadline of a few ticks (``_vm.py``), so a
module that loops forever traps instead of holding the event loop, while a
callback that is only preempted (a busy host) keeps its whole bound. The ticker
runs only while some module is loaded. Linear memories
never move (``memory_may_move`` off): the host reads a memory's base address once.

Modules are compiled once per content hash (sha256 of the ``.wasm`` bytes).
The compiled artifact is kept in memory for the process and serialized to the
cache directory (``<sha256>-<wasmtime version>.cwasm``, written atomically), so
the next process deserializes it in a fraction of the compile time. Only
artifacts plait wrote itself are deserialized: the directory is the host's,
never a download location. The original bytes are stored next to it as
``<sha256>.wasm``, so a filter config may name a module by its hash alone. The
host's own small module (the log gate of ``_loggate.py``) is cached the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Final

import wasmtime

from ._abi import ABI_MARKERS, UNSUPPORTED_MARKERS
from ._imports import check_imports
from ._loggate import GATE_WAT

__all__ = [
    "EPOCH",
    "EPOCH_TICK",
    "CompiledModule",
    "ModuleError",
    "engine",
    "guest_thread",
    "load",
]

log = logging.getLogger(__name__)

EPOCH_TICK: Final = 0.005
"""CPU seconds of the guest thread per epoch increment: the granularity of the
per-callback CPU bound."""

EPOCH: Final = [0]
"""The ticks so far, counted in Python (``EPOCH[0]``): never behind the engine's epoch
and at most one ahead of it, so ``_vm.py`` knows how much of a deadline is left
without asking wasmtime."""

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_ticker: threading.Thread | None = None
_compiled: dict[str, CompiledModule] = {}
_gate: wasmtime.Module | None = None
_WASMTIME: Final = version("wasmtime")


class ModuleError(Exception):
    """A module that cannot be used: unreadable, wrong hash, not Proxy-Wasm, bad imports."""


@dataclass(frozen=True, slots=True)
class CompiledModule:
    sha256: str
    module: wasmtime.Module
    abi: str
    """The ABI version the module's marker export declares."""
    exports: frozenset[str]
    source: str
    """Where the bytes came from (a path), for messages."""


def engine() -> wasmtime.Engine:
    """The process's engine (epoch interruption on), with its ticker running."""
    global _engine, _ticker
    with _lock:
        if _engine is None:
            config = wasmtime.Config()
            config.epoch_interruption = True
            # a memory keeps its base address (``_memory.py`` reads it once); growth
            # stays inside the reservation (4 GiB on 64-bit hosts, above any memory limit)
            config.memory_may_move = False
            _engine = wasmtime.Engine(config)
        if _ticker is None:
            _ticker = threading.Thread(
                target=_tick, args=(_engine,), name="plait-wasm-epoch", daemon=True
            )
            _ticker.start()
        return _engine


_guest: list[int] = [threading.get_ident()]


def guest_thread() -> None:
    """The calling thread runs guest code from now on: its CPU time drives the epoch."""
    _guest[0] = threading.get_ident()


def _cpu(ident: int) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ValueError):  # the thread is gone: count wall time until the next
        return time.monotonic()


def _tick(eng: wasmtime.Engine) -> None:
    ident = _guest[0]
    used = _cpu(ident)
    while True:
        time.sleep(EPOCH_TICK)
        if _guest[0] != ident:
            ident = _guest[0]
            used = _cpu(ident)
        now = _cpu(ident)
        while now - used >= EPOCH_TICK:
            used += EPOCH_TICK
            EPOCH[0] += 1  # before the engine's, so the count is never behind it
            eng.increment_epoch()


def load(path: Path | None, sha256: str | None, cache_dir: Path) -> CompiledModule:
    """The compiled module at ``path`` (or known by ``sha256`` in the cache); raises
    :class:`ModuleError` saying what is wrong."""
    if path is None:
        if sha256 is None:
            raise ModuleError("neither a module path nor a sha256 given")
        if sha256 in _compiled:
            return _compiled[sha256]
        path = cache_dir / f"{sha256}.wasm"
        if not path.is_file():
            raise ModuleError(f"no module with sha256 {sha256} in the cache {cache_dir}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModuleError(f"cannot read {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ModuleError(f"{path} has sha256 {digest}, expected {sha256}")
    if (found := _compiled.get(digest)) is not None:
        return found
    eng = engine()
    module = _compile(eng, data, digest, cache_dir)
    exports = frozenset(e.name for e in module.exports)
    abi = next((v for name, v in ABI_MARKERS.items() if name in exports), None)
    if abi is None:
        old = next((v for name, v in UNSUPPORTED_MARKERS.items() if name in exports), None)
        if old is not None:
            raise ModuleError(f"{path}: Proxy-Wasm ABI {old} is not supported (0.2.0, 0.2.1 are)")
        raise ModuleError(
            f"{path} is not a Proxy-Wasm module: it exports no ABI marker "
            f"({' or '.join(ABI_MARKERS)})"
        )
    problem = check_imports(module)
    if problem:
        raise ModuleError(f"{path}: {problem}")
    compiled = CompiledModule(digest, module, abi, exports, str(path))
    _compiled[digest] = compiled
    _load_gate(eng, cache_dir)
    return compiled


def _load_gate(eng: wasmtime.Engine, cache_dir: Path) -> None:
    global _gate
    if _gate is None:  # cached like any module: a new process compiles nothing
        data = bytes(wasmtime.wat2wasm(GATE_WAT))
        _gate = _compile(eng, data, hashlib.sha256(data).hexdigest(), cache_dir)


def gate_module() -> wasmtime.Module:
    """The log gate of ``_loggate.py``, compiled (and cached) with the first module."""
    if _gate is None:
        _load_gate(engine(), Path(tempfile.gettempdir()))
    assert _gate is not None
    return _gate


def _compile(eng: wasmtime.Engine, data: bytes, digest: str, cache_dir: Path) -> wasmtime.Module:
    artifact = cache_dir / f"{digest}-{_WASMTIME}.cwasm"
    if artifact.is_file():
        try:
            return wasmtime.Module.deserialize_file(eng, str(artifact))
        except wasmtime.WasmtimeError as exc:
            log.warning("wasm cache %s unusable (%s); compiling again", artifact, exc)
    try:
        module = wasmtime.Module(eng, data)
    except wasmtime.WasmtimeError as exc:
        raise ModuleError(f"not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write(artifact, bytes(module.serialize()))
        source = cache_dir / f"{digest}.wasm"
        if not source.exists():
            _write(source, data)
    except OSError as exc:
        log.warning(
            "wasm cache %s not writable (%s); modules compile on every start", cache_dir, exc
        )
    return module


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
