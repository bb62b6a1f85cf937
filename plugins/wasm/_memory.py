"""Reading and writing a guest's linear memory, and handing data to the guest.

Host calls receive pointers into the module's memory. Every access is bounds
checked against the memory's size and copies from or to a ``memoryview`` of the
memory in place. The engine's memories never move (``_engine.py``) and never
shrink, so a view of the first N bytes stays valid while the instance lives;
its size is a lower bound of the memory's (which grows, also from inside a host
call that allocates), and only an access past it asks wasmtime for the current
size and makes a longer view. An access that fits costs no wasmtime call. No
slice of the view leaves this module: reads return copies.

Data the host returns (a header value, a body) is copied into memory the
guest allocates with its exported allocator (``malloc`` first, as Envoy's host
does, else ``proxy_on_memory_allocate``); its address and size go to the
guest's out-pointers and the guest owns (and frees) it. An empty result
allocates nothing and writes a null pointer and size 0.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any, Final

import wasmtime

from . import _fast as fast
from ._abi import MASK32, Status, u32

__all__ = ["GuestMemory", "MemoryFault"]

_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")


class MemoryFault(Exception):
    """A pointer/size outside the guest's memory, or a failed guest allocation."""


class GuestMemory:
    """The guest's memory and allocator (both set once the instance exists)."""

    __slots__ = ("_context", "_memory", "_size", "_view", "alloc", "memory")

    def __init__(self) -> None:
        self.memory: wasmtime.Memory | None = None
        self._context = 0
        self._memory = 0
        self._view = memoryview(b"")
        """The guest memory's first :attr:`_size` bytes, in place (fast path)."""
        self._size = 0
        """A lower bound of the memory's size (it never shrinks)."""
        self.alloc: Callable[[Any, int], int] | None = None
        """``alloc(store, size) -> address`` (``_vm.py`` binds the module's allocator)."""

    def bind(self, memory: wasmtime.Memory, store: wasmtime.Store) -> None:
        self.memory = memory
        if fast.AVAILABLE:  # the engine's memories never move (``_engine.py``)
            self._context = fast.context_of(store)
            self._memory = ctypes.addressof(memory._memory)
            self._fits(0)

    def _fits(self, end: int) -> None:
        """Make the view cover ``end`` bytes, or raise :class:`MemoryFault`."""
        size = fast.memory_size(self._context, self._memory)
        if end > size:
            raise MemoryFault(f"access up to byte {end} is outside the guest memory ({size})")
        base = fast.memory_data(self._context, self._memory) or 0
        self._view = memoryview((ctypes.c_char * size).from_address(base)).cast("B")
        self._size = size

    def _at(self, store: Any, ptr: int, size: int) -> int:
        mem = self.memory
        if mem is None:
            raise MemoryFault("the module exports no memory")
        if ptr + size > mem.data_len(store):
            raise MemoryFault(f"{size} bytes at {ptr} are outside the guest memory")
        return ctypes.addressof(mem.data_ptr(store).contents) + ptr

    def read(self, store: Any, ptr: int, size: int) -> bytes:
        ptr, size = ptr & MASK32, size & MASK32
        if size == 0:
            return b""
        if self._memory:  # the fast path: a copy out of the view
            end = ptr + size
            if end > self._size:
                self._fits(end)
            return self._view[ptr:end].tobytes()
        return ctypes.string_at(self._at(store, ptr, size), size)

    def write(self, store: Any, ptr: int, data: bytes) -> None:
        if not data:
            return
        ptr = ptr & MASK32
        if self._memory:
            end = ptr + len(data)
            if end > self._size:
                self._fits(end)
            self._view[ptr:end] = data
            return
        ctypes.memmove(self._at(store, ptr, len(data)), data, len(data))

    def put_u32(self, store: Any, ptr: int, value: int) -> None:
        self.write(store, ptr, _U32.pack(value & 0xFFFFFFFF))

    def put_u64(self, store: Any, ptr: int, value: int) -> None:
        self.write(store, ptr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))

    def give(self, store: Any, data: bytes, ptr_out: int, size_out: int) -> int:
        """Copy ``data`` into a fresh guest allocation; write its address and size to
        the out-pointers. Returns the status for the host call."""
        if not data:
            self.put_u32(store, ptr_out, 0)
            self.put_u32(store, size_out, 0)
            return Status.OK
        if self.alloc is None:
            raise MemoryFault("the module exports no allocator (malloc/proxy_on_memory_allocate)")
        addr = self.alloc(store, len(data))
        if u32(addr) == 0:
            raise MemoryFault(f"the guest allocator failed for {len(data)} bytes")
        self.write(store, addr, data)
        self.put_u32(store, ptr_out, addr)
        self.put_u32(store, size_out, len(data))
        return Status.OK
