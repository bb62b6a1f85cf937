"""The Proxy-Wasm ABI as plait's host sees it: constants, signatures, serialization.

Everything here comes from the public Proxy-Wasm spec (ABI versions 0.2.0 and
0.2.1): the status, action, buffer, map and log-level codes; the type of every
host function a module may import from ``env``; and the little-endian map
serialization used by header maps, local-reply headers and map properties::

    u32 N | N x (u32 key_len, u32 value_len) | N x (key, 0x00, value, 0x00)

All ABI integers are unsigned 32-bit values that wasmtime hands to Python as
signed ints: every pointer and size goes through :func:`u32` first.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

__all__ = [
    "ABI_MARKERS",
    "ENV_SIGNATURES",
    "MASK32",
    "Action",
    "BufferType",
    "LogLevel",
    "MapType",
    "Status",
    "StreamType",
    "decode_pairs",
    "encode_pairs",
    "u32",
]

MASK32: Final = 0xFFFFFFFF

ABI_MARKERS: Final = {
    "proxy_abi_version_0_2_1": "0.2.1",
    "proxy_abi_version_0_2_0": "0.2.0",
}
"""The marker export a module must have, and the ABI version it declares."""
UNSUPPORTED_MARKERS: Final = {"proxy_abi_version_0_1_0": "0.1.0"}


def u32(value: int) -> int:
    """An ABI ``u32``/``size_t`` from wasmtime's signed ``i32``."""
    return value & MASK32


class Status(IntEnum):
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    INTERNAL_FAILURE = 10
    UNIMPLEMENTED = 12


class Action(IntEnum):
    CONTINUE = 0
    PAUSE = 1


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class BufferType(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_CALL_MESSAGE = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8


class MapType(IntEnum):
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_CALL_INITIAL_METADATA = 4
    GRPC_CALL_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class StreamType(IntEnum):
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


END_OF_STREAM_FLAG: Final = 1
"""``proxy_get_buffer_status`` flag: the buffer holds the end of its stream."""


def _i32s(n: int) -> tuple[str, ...]:
    return ("i32",) * n


# name -> (param types, result types). Every host function the spec (and the SDKs'
# extensions that hosts provide, e.g. the v0.1.0 names the C++ SDK still imports) defines.
ENV_SIGNATURES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "proxy_log": (_i32s(3), ("i32",)),
    "proxy_get_log_level": (_i32s(1), ("i32",)),
    "proxy_get_current_time_nanoseconds": (_i32s(1), ("i32",)),
    "proxy_set_tick_period_milliseconds": (_i32s(1), ("i32",)),
    "proxy_done": ((), ("i32",)),
    "proxy_set_effective_context": (_i32s(1), ("i32",)),
    "proxy_get_buffer_bytes": (_i32s(5), ("i32",)),
    "proxy_set_buffer_bytes": (_i32s(5), ("i32",)),
    "proxy_get_buffer_status": (_i32s(3), ("i32",)),
    "proxy_get_header_map_size": (_i32s(2), ("i32",)),
    "proxy_get_header_map_pairs": (_i32s(3), ("i32",)),
    "proxy_set_header_map_pairs": (_i32s(3), ("i32",)),
    "proxy_get_header_map_value": (_i32s(5), ("i32",)),
    "proxy_add_header_map_value": (_i32s(5), ("i32",)),
    "proxy_replace_header_map_value": (_i32s(5), ("i32",)),
    "proxy_remove_header_map_value": (_i32s(3), ("i32",)),
    "proxy_continue_stream": (_i32s(1), ("i32",)),
    "proxy_close_stream": (_i32s(1), ("i32",)),
    "proxy_get_status": (_i32s(3), ("i32",)),
    "proxy_send_local_response": (_i32s(8), ("i32",)),
    "proxy_http_call": (_i32s(10), ("i32",)),
    "proxy_grpc_call": (_i32s(12), ("i32",)),
    "proxy_grpc_stream": (_i32s(9), ("i32",)),
    "proxy_grpc_send": (_i32s(4), ("i32",)),
    "proxy_grpc_cancel": (_i32s(1), ("i32",)),
    "proxy_grpc_close": (_i32s(1), ("i32",)),
    "proxy_set_shared_data": (_i32s(5), ("i32",)),
    "proxy_get_shared_data": (_i32s(5), ("i32",)),
    "proxy_register_shared_queue": (_i32s(3), ("i32",)),
    "proxy_resolve_shared_queue": (_i32s(5), ("i32",)),
    "proxy_enqueue_shared_queue": (_i32s(3), ("i32",)),
    "proxy_dequeue_shared_queue": (_i32s(3), ("i32",)),
    "proxy_define_metric": (_i32s(4), ("i32",)),
    "proxy_record_metric": (("i32", "i64"), ("i32",)),
    "proxy_increment_metric": (("i32", "i64"), ("i32",)),
    "proxy_get_metric": (_i32s(2), ("i32",)),
    "proxy_get_property": (_i32s(4), ("i32",)),
    "proxy_set_property": (_i32s(4), ("i32",)),
    "proxy_call_foreign_function": (_i32s(6), ("i32",)),
    # ABI 0.1.0 names that SDKs still import (the C++ SDK declares them all)
    "proxy_get_configuration": (_i32s(2), ("i32",)),
    "proxy_continue_request": ((), ("i32",)),
    "proxy_continue_response": ((), ("i32",)),
    "proxy_clear_route_cache": ((), ("i32",)),
    # Emscripten-built modules (the C++ SDK)
    "pthread_equal": (_i32s(2), ("i32",)),
    "emscripten_notify_memory_growth": (_i32s(1), ()),
}

_U32: Final = struct.Struct("<I")


_EMPTY_MAP: Final = b"\0\0\0\0"


def encode_pairs(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A map in the ABI's serialization; an empty map is its 4-byte count of 0 (SDKs that
    read the count without checking the size, as older Go SDKs do, get no pairs)."""
    if not pairs:
        return _EMPTY_MAP
    sizes = [len(pairs)]
    data: list[bytes] = []
    for k, v in pairs:
        sizes += (len(k), len(v))
        data += (k, v)
    data.append(b"")  # the last value's NUL
    return struct.pack(f"<{len(sizes)}I", *sizes) + b"\0".join(data)


def decode_pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The pairs of a serialized map; raises :class:`ValueError` when it is malformed."""
    if len(raw) <= 1:  # the spec's empty map is b"" or a single NUL
        return []
    if len(raw) < 4:
        raise ValueError("serialized map shorter than its count")
    (n,) = _U32.unpack_from(raw, 0)
    pos = 4 + 8 * n
    if pos > len(raw):
        raise ValueError(f"serialized map declares {n} pairs but is {len(raw)} bytes")
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        klen, vlen = struct.unpack_from("<II", raw, 4 + 8 * i)
        end = pos + klen + 1 + vlen + 1
        if end > len(raw):
            raise ValueError("serialized map truncated")
        out.append((raw[pos : pos + klen], raw[pos + klen + 1 : pos + klen + 1 + vlen]))
        pos = end
    return out
