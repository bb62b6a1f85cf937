"""The Proxy-Wasm host functions of the HTTP filter path.

Each acts on the *effective* context: the one whose callback is running, or
the one set with ``proxy_set_effective_context``. Header-map calls reach the
stream's heads through ``_headermap.py``; buffer calls reach the body chunk of
the body callback in progress (``HTTP_REQUEST_BODY``/``HTTP_RESPONSE_BODY``) and
the configurations (``VM_CONFIGURATION``, ``PLUGIN_CONFIGURATION``). A call
about something the effective context does not have (a response map before the
response, a body outside its callback) answers ``NOT_FOUND``; a pointer outside
guest memory answers ``INVALID_MEMORY_ACCESS`` (``_imports._guard``).

``proxy_send_local_response`` records the reply on the stream: the adapter
answers it as the hook's result, whatever action the callback returns after it.
"""

from __future__ import annotations

import logging
from typing import Any

from plait.sdk import LocalReply

from ._abi import (
    END_OF_STREAM_FLAG,
    BufferType,
    LogLevel,
    Status,
    StreamType,
    decode_pairs,
    encode_pairs,
    u32,
)
from ._headermap import BadHeader, HeaderMap, header_map
from ._memory import GuestMemory
from ._properties import PluginInfo, get_property
from ._state import RootState, StreamState

__all__ = ["HostCalls"]

_LEVELS = {
    LogLevel.TRACE: 5,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARN: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.CRITICAL: logging.CRITICAL,
}


class HostCalls:
    """Mixed into the VM, which sets these attributes."""

    mem: GuestMemory
    log: logging.Logger
    info: PluginInfo
    root: RootState
    current: RootState | StreamState | None
    contexts: dict[int, RootState | StreamState]

    # -- logging and contexts --------------------------------------------------------------

    def proxy_log(self, caller: Any, level: int, ptr: int, size: int) -> int:
        py_level = _LEVELS.get(level, logging.CRITICAL)  # type: ignore[call-overload]
        if self.log.isEnabledFor(py_level):
            text = self.mem.read(caller, ptr, size).decode("utf-8", "replace")
            self.log.log(py_level, "%s", text)
        return Status.OK

    def proxy_get_log_level(self, caller: Any, out: int) -> int:
        level = self.log.getEffectiveLevel()
        ours = next((k for k, v in sorted(_LEVELS.items()) if level <= v), LogLevel.CRITICAL)
        self.mem.put_u32(caller, out, ours)
        return Status.OK

    def proxy_set_effective_context(self, caller: Any, context_id: int) -> int:
        found = self.contexts.get(u32(context_id))
        if found is None:
            return Status.BAD_ARGUMENT
        self.current = found
        return Status.OK

    def _stream(self) -> StreamState | None:
        cur = self.current
        return cur if type(cur) is StreamState else None

    # -- buffers ---------------------------------------------------------------------------

    def _buffer(self, kind: int) -> bytes | None:
        if kind == BufferType.PLUGIN_CONFIGURATION:
            return self.root.plugin_config
        if kind == BufferType.VM_CONFIGURATION:
            return self.root.vm_config
        stream = self._stream()
        if stream is not None and stream.body is not None and stream.body_type == kind:
            return stream.body
        return None

    def proxy_get_buffer_bytes(
        self, caller: Any, kind: int, start: int, size: int, ptr_out: int, size_out: int
    ) -> int:
        data = self._buffer(kind)
        if data is None:
            return Status.NOT_FOUND
        start = u32(start)
        return self.mem.give(caller, data[start : start + u32(size)], ptr_out, size_out)

    def proxy_get_configuration(self, caller: Any, ptr_out: int, size_out: int) -> int:
        return self.mem.give(caller, self.root.plugin_config, ptr_out, size_out)

    def proxy_get_buffer_status(self, caller: Any, kind: int, size_out: int, flags: int) -> int:
        data = self._buffer(kind)
        if data is None:
            return Status.NOT_FOUND
        stream = self._stream()
        end = stream is not None and stream.body is data and stream.body_end
        self.mem.put_u32(caller, size_out, len(data))
        self.mem.put_u32(caller, flags, END_OF_STREAM_FLAG if end else 0)
        return Status.OK

    def proxy_set_buffer_bytes(
        self, caller: Any, kind: int, start: int, size: int, ptr: int, length: int
    ) -> int:
        stream = self._stream()
        if stream is None or stream.body is None or stream.body_type != kind:
            return Status.NOT_FOUND
        value = self.mem.read(caller, ptr, length)
        data, start = stream.body, u32(start)
        stream.body = data[:start] + value + data[start + u32(size) :]
        return Status.OK

    # -- header maps -----------------------------------------------------------------------

    def _map(self, kind: int) -> HeaderMap | None:
        stream = self._stream()
        return None if stream is None else header_map(stream, kind)

    def proxy_get_header_map_pairs(
        self, caller: Any, kind: int, ptr_out: int, size_out: int
    ) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        return self.mem.give(caller, encode_pairs(hmap.pairs()), ptr_out, size_out)

    def proxy_get_header_map_size(self, caller: Any, kind: int, size_out: int) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        self.mem.put_u32(caller, size_out, len(encode_pairs(hmap.pairs())))
        return Status.OK

    def proxy_set_header_map_pairs(self, caller: Any, kind: int, ptr: int, size: int) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        try:
            hmap.set_pairs(decode_pairs(self.mem.read(caller, ptr, size)))
        except BadHeader:
            return Status.BAD_ARGUMENT
        except ValueError:
            return Status.SERIALIZATION_FAILURE
        return Status.OK

    def proxy_get_header_map_value(
        self, caller: Any, kind: int, key: int, key_size: int, ptr_out: int, size_out: int
    ) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        value = hmap.get(self.mem.read(caller, key, key_size))
        if value is None:
            return Status.NOT_FOUND
        return self.mem.give(caller, value, ptr_out, size_out)

    def _edit(self, caller: Any, kind: int, key: int, ks: int, val: int, vs: int, op: str) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        name = self.mem.read(caller, key, ks)
        value = self.mem.read(caller, val, vs)
        try:
            hmap.add(name, value) if op == "add" else hmap.replace(name, value)
        except BadHeader:
            return Status.BAD_ARGUMENT
        return Status.OK

    def proxy_add_header_map_value(
        self, caller: Any, kind: int, key: int, key_size: int, value: int, value_size: int
    ) -> int:
        return self._edit(caller, kind, key, key_size, value, value_size, "add")

    def proxy_replace_header_map_value(
        self, caller: Any, kind: int, key: int, key_size: int, value: int, value_size: int
    ) -> int:
        return self._edit(caller, kind, key, key_size, value, value_size, "replace")

    def proxy_remove_header_map_value(self, caller: Any, kind: int, key: int, size: int) -> int:
        hmap = self._map(kind)
        if hmap is None:
            return Status.NOT_FOUND
        hmap.remove(self.mem.read(caller, key, size))
        return Status.OK

    # -- the stream ------------------------------------------------------------------------

    def proxy_continue_stream(self, caller: Any, stream_type: int) -> int:
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        if stream_type not in (StreamType.HTTP_REQUEST, StreamType.HTTP_RESPONSE):
            return Status.BAD_ARGUMENT  # TCP streams: not an HTTP filter's
        stream.resumed[stream_type] = True
        return Status.OK

    def proxy_continue_request(self, caller: Any) -> int:
        return self.proxy_continue_stream(caller, 0)

    def proxy_continue_response(self, caller: Any) -> int:
        return self.proxy_continue_stream(caller, 1)

    def proxy_close_stream(self, caller: Any, stream_type: int) -> int:
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        stream.closed = True
        return Status.OK

    def proxy_send_local_response(
        self,
        caller: Any,
        status: int,
        details: int,
        details_size: int,
        body: int,
        body_size: int,
        headers: int,
        headers_size: int,
        grpc_status: int,
    ) -> int:
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        if not 100 <= status <= 599:
            return Status.BAD_ARGUMENT
        try:
            pairs = decode_pairs(self.mem.read(caller, headers, headers_size))
        except ValueError:
            return Status.SERIALIZATION_FAILURE
        extra: list[tuple[str, str]] = []
        for k, v in pairs:
            if k.startswith(b":") or any(c in v for c in b"\r\n\0") or not k:
                return Status.BAD_ARGUMENT
            extra.append((k.lower().decode("latin-1"), v.decode("latin-1")))
        reason = self.mem.read(caller, details, details_size).decode("utf-8", "replace")
        stream.reply = LocalReply(
            status,
            self.mem.read(caller, body, body_size),
            tuple(extra),
            reason=reason or f"local reply from wasm filter {self.info.name}",
        )
        return Status.OK

    # -- properties ------------------------------------------------------------------------

    def proxy_get_property(
        self, caller: Any, path: int, size: int, ptr_out: int, size_out: int
    ) -> int:
        value = get_property(self.info, self._stream(), self.mem.read(caller, path, size))
        if value is None:
            return Status.NOT_FOUND
        return self.mem.give(caller, value, ptr_out, size_out)

    def proxy_set_property(self, caller: Any, path: int, size: int, value: int, vsize: int) -> int:
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        if stream.properties is None:
            stream.properties = {}
        stream.properties[self.mem.read(caller, path, size)] = self.mem.read(caller, value, vsize)
        return Status.OK
