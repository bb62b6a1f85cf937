"""``proxy_get_property``: what the host tells a module about itself and the stream.

A property path is its segments joined by NUL (``request\\0path``). Values use
the encodings Envoy's host uses, which the SDKs decode: strings as their bytes,
integers as 8-byte little-endian, booleans as one byte, header maps in the ABI's
map serialization (``_abi.encode_pairs``). A property a module set with
``proxy_set_property`` is read back as it was set. Unknown paths are
``NOT_FOUND`` (``None`` here).

Provided: ``plugin_name``, ``plugin_root_id``, ``plugin_vm_id``;
``request.{path, url_path, query, host, scheme, method, protocol, id,
useragent, referer, headers, headers.<name>, time, duration}``;
``response.{code, headers, headers.<name>}``; ``source.{address, port}`` and
``destination.{address, port}`` (the downstream connection's peer and local
ends); ``connection.{mtls, requested_server_name, uri_san_peer_certificate,
id}``; ``route_name``, ``cluster_name`` (also under ``xds.``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Final

from plait.sdk import Headers, StreamContext

from ._abi import encode_pairs
from ._state import StreamState

__all__ = ["PluginInfo", "get_property"]

_I64: Final = struct.Struct("<q")


class PluginInfo:
    __slots__ = ("name", "root_id", "vm_id")

    def __init__(self, name: str, root_id: str, vm_id: str) -> None:
        self.name, self.root_id, self.vm_id = name, root_id, vm_id


def _int(value: int) -> bytes:
    return _I64.pack(value)


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


def _headers(headers: Headers, rest: list[bytes]) -> bytes | None:
    if not rest:
        return encode_pairs(headers.raw)
    if len(rest) == 1:
        return headers.get_raw(rest[0].lower())
    return None


def _request(ctx: StreamContext, field: bytes, rest: list[bytes]) -> bytes | None:
    req = ctx.request
    if field == b"headers":
        return _headers(req.headers, rest)
    if rest:
        return None
    simple: dict[bytes, Callable[[], bytes | None]] = {
        b"path": lambda: _text(req.path),
        b"url_path": lambda: _text(req.path_only),
        b"query": lambda: _text(req.path.partition("?")[2]),
        b"host": lambda: _text(req.authority or req.headers.get("host")),
        b"scheme": lambda: _text(req.scheme),
        b"method": lambda: _text(req.method),
        b"protocol": lambda: _text(f"HTTP/{req.http_version}"),
        b"id": lambda: req.headers.get_raw("x-request-id"),
        b"useragent": lambda: req.headers.get_raw("user-agent"),
        b"referer": lambda: req.headers.get_raw("referer"),
        b"time": lambda: _int(time.time_ns() - int((time.monotonic() - ctx.started_at) * 1e9)),
        b"duration": lambda: _int(int((time.monotonic() - ctx.started_at) * 1e9)),
    }
    getter = simple.get(field)
    return getter() if getter is not None else None


def _stream(stream: StreamState, path: list[bytes]) -> bytes | None:
    ctx = stream.ctx
    head, rest = path[0], path[1:]
    conn = ctx.connection
    if head == b"request" and rest:
        return _request(ctx, rest[0], rest[1:])
    if head == b"response" and rest and ctx.response is not None:
        if rest[0] == b"code" and len(rest) == 1:
            return _int(ctx.response.status)
        if rest[0] == b"headers":
            return _headers(ctx.response.headers, rest[1:])
        return None
    if head in (b"source", b"destination") and len(rest) == 1:
        host, port = conn.peer_address if head == b"source" else conn.local_address
        if rest[0] == b"address":
            return _text(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        if rest[0] == b"port":
            return _int(port)
        return None
    if head == b"connection" and len(rest) == 1:
        peer = conn.peer_identity
        values = {
            b"mtls": bytes([peer is not None]),
            b"requested_server_name": _text(conn.sni or ""),
            b"uri_san_peer_certificate": _text(peer.spiffe_id if peer else None),
            b"id": _int(id(conn) & 0x7FFFFFFFFFFFFFFF),
        }
        return values.get(rest[0])
    if head == b"xds" and len(rest) == 1:
        head, rest = rest[0], []
    if head == b"route_name" and not rest:
        return _text(ctx.route_name)
    if head == b"cluster_name" and not rest:
        return _text(ctx.cluster)
    return None


def get_property(info: PluginInfo, stream: StreamState | None, raw_path: bytes) -> bytes | None:
    """The value of the property at ``raw_path`` (NUL-separated segments), or ``None``."""
    if stream is not None and stream.properties and raw_path in stream.properties:
        return stream.properties[raw_path]
    path = raw_path.split(b"\0")
    if len(path) == 1:
        plugin = {b"plugin_name": info.name, b"plugin_root_id": info.root_id}
        if (value := plugin.get(path[0])) is not None or path[0] == b"plugin_vm_id":
            return (info.vm_id if value is None else value).encode()
    if stream is None or not path[0]:
        return None
    return _stream(stream, path)
