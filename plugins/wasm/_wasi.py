"""WASI preview1, as much as Proxy-Wasm modules need (the spec's host functions).

The spec gives a filter stdout/stderr (to the proxy's log), clocks, random
bytes, its own environment (the plugin's ``env``, never the host's), empty
arguments and ``proc_exit``; language runtimes also call ``fd_fdstat_get``,
``fd_prestat_get``, ``poll_oneoff`` and ``sched_yield`` while they start. These
behave as Envoy's host does: stdout and stderr are character devices that may
only be written, there are no preopened directories, ``poll_oneoff`` reports no
events. ``proc_exit`` ends the callback with a trap (the AssemblyScript SDK's
``abort`` calls it and must not return). Every other WASI function answers
``ENOSYS`` (``_imports.py``).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from typing import Any, Final

from ._memory import GuestMemory

__all__ = ["ProcExit", "WasiCalls"]

SUCCESS: Final = 0
EBADF: Final = 8
EINVAL: Final = 28
ENOSYS: Final = 52
_FD_WRITE_RIGHT: Final = 64
_CHARACTER_DEVICE: Final = 2
_IOVEC: Final = struct.Struct("<II")
_RANDOM_MAX: Final = 64 * 1024


class ProcExit(Exception):
    """The module called ``proc_exit``: the callback ends as a trap."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the module called proc_exit({code})")
        self.code = code


class WasiCalls:
    """The WASI functions of one instance (mixed into the VM, which sets these)."""

    mem: GuestMemory
    log: logging.Logger
    environ: tuple[bytes, ...]
    """``KEY=VALUE`` entries, without their NUL."""

    def wasi_fd_write(self, caller: Any, fd: int, iovs: int, count: int, written: int) -> int:
        if fd not in (1, 2):
            return EBADF
        raw = self.mem.read(caller, iovs, 8 * (count & 0xFFFF))
        data = b"".join(
            self.mem.read(caller, *_IOVEC.unpack_from(raw, 8 * i)) for i in range(count & 0xFFFF)
        )
        text = data.decode("utf-8", "replace").rstrip("\n")
        if text:
            self.log.log(logging.INFO if fd == 1 else logging.ERROR, "%s", text)
        self.mem.put_u32(caller, written, len(data))
        return SUCCESS

    def wasi_fd_read(self, caller: Any, fd: int, iovs: int, count: int, read: int) -> int:
        return ENOSYS

    def wasi_fd_close(self, caller: Any, fd: int) -> int:
        return SUCCESS

    def wasi_fd_seek(self, caller: Any, fd: int, offset: int, whence: int, out: int) -> int:
        return EBADF

    def wasi_fd_fdstat_get(self, caller: Any, fd: int, out: int) -> int:
        if fd not in (1, 2):
            return EBADF
        stat = struct.pack("<BxHxxxxQQ", _CHARACTER_DEVICE, 0, _FD_WRITE_RIGHT, 0)
        self.mem.write(caller, out, stat)
        return SUCCESS

    def wasi_fd_fdstat_set_flags(self, caller: Any, fd: int, flags: int) -> int:
        return ENOSYS

    def wasi_fd_prestat_get(self, caller: Any, fd: int, out: int) -> int:
        return EBADF

    def wasi_fd_prestat_dir_name(self, caller: Any, fd: int, path: int, size: int) -> int:
        return EBADF

    def wasi_environ_sizes_get(self, caller: Any, count_out: int, size_out: int) -> int:
        self.mem.put_u32(caller, count_out, len(self.environ))
        self.mem.put_u32(caller, size_out, sum(len(e) + 1 for e in self.environ))
        return SUCCESS

    def wasi_environ_get(self, caller: Any, array: int, buf: int) -> int:
        return self._strings(caller, self.environ, array, buf)

    def wasi_args_sizes_get(self, caller: Any, count_out: int, size_out: int) -> int:
        self.mem.put_u32(caller, count_out, 0)
        self.mem.put_u32(caller, size_out, 0)
        return SUCCESS

    def wasi_args_get(self, caller: Any, array: int, buf: int) -> int:
        return SUCCESS

    def _strings(self, caller: Any, items: tuple[bytes, ...], array: int, buf: int) -> int:
        ptr = buf & 0xFFFFFFFF
        for i, item in enumerate(items):
            self.mem.put_u32(caller, (array & 0xFFFFFFFF) + 4 * i, ptr)
            self.mem.write(caller, ptr, item + b"\0")
            ptr += len(item) + 1
        return SUCCESS

    def wasi_clock_time_get(self, caller: Any, clock: int, precision: int, out: int) -> int:
        if clock == 0:
            now = time.time_ns()
        elif clock == 1:
            now = time.monotonic_ns()
        elif clock in (2, 3):
            now = time.process_time_ns()
        else:
            return EINVAL
        self.mem.put_u64(caller, out, now)
        return SUCCESS

    def wasi_clock_res_get(self, caller: Any, clock: int, out: int) -> int:
        if not 0 <= clock <= 3:
            return EINVAL
        self.mem.put_u64(caller, out, 1000)
        return SUCCESS

    def wasi_random_get(self, caller: Any, buf: int, size: int) -> int:
        size &= 0xFFFFFFFF
        if size > _RANDOM_MAX:
            return EINVAL
        self.mem.write(caller, buf, os.urandom(size))
        return SUCCESS

    def wasi_sched_yield(self, caller: Any) -> int:
        return SUCCESS

    def wasi_poll_oneoff(self, caller: Any, subs: int, events: int, count: int, out: int) -> int:
        self.mem.put_u32(caller, out, 0)  # Go's runtime needs SUCCESS here
        return SUCCESS

    def wasi_proc_exit(self, caller: Any, code: int) -> None:
        raise ProcExit(code)
