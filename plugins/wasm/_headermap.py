"""Header maps as the module sees them: plait's heads plus the HTTP pseudo-headers.

A request map is ``:method``, ``:scheme``, ``:authority``, ``:path`` followed by
the request's header list; a response map is ``:status`` followed by the
response's. Reads build the view on demand; writes go straight to plait's
:class:`~plait.sdk.RequestHead`/:class:`~plait.sdk.ResponseHead` (a pseudo-header
sets the head's field, ``:authority`` also the ``host`` header when there is
one), so what the module changes is what the proxy forwards. Trailer maps are
the trailers of the stream's trailers callback. Keys are lower-cased, as in
every HTTP/2 header list.
"""

from __future__ import annotations

from plait.sdk import Headers

from ._abi import MapType
from ._state import StreamState

__all__ = ["BadHeader", "HeaderMap", "header_map"]

_PSEUDO_REQUEST = (b":method", b":scheme", b":authority", b":path")


class BadHeader(ValueError):
    """A value the head cannot take (a non-numeric ``:status``, CR/LF, ...)."""


def _check(value: bytes) -> bytes:
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise BadHeader("header values may not contain CR, LF or NUL")
    return value


class HeaderMap:
    """One map of one stream (``None`` from :func:`header_map` when it does not exist yet)."""

    __slots__ = ("headers", "kind", "stream")

    def __init__(self, stream: StreamState, kind: int, headers: Headers) -> None:
        self.stream = stream
        self.kind = kind
        self.headers = headers

    # -- pseudo-headers ---------------------------------------------------------------------

    def _pseudo(self) -> list[tuple[bytes, bytes]]:
        ctx = self.stream.ctx
        if self.kind == MapType.HTTP_REQUEST_HEADERS:
            req = ctx.request
            authority = req.authority or (req.headers.get("host") or "")
            values = (req.method, req.scheme, authority, req.path)
            return [(k, v.encode("latin-1")) for k, v in zip(_PSEUDO_REQUEST, values, strict=True)]
        if self.kind == MapType.HTTP_RESPONSE_HEADERS and ctx.response is not None:
            return [(b":status", str(ctx.response.status).encode())]
        return []

    def _set_pseudo(self, key: bytes, value: bytes) -> None:
        ctx = self.stream.ctx
        text = _check(value).decode("latin-1")
        if self.kind == MapType.HTTP_REQUEST_HEADERS:
            req = ctx.request
            if key == b":method" and text:
                req.method = text
            elif key == b":scheme" and text:
                req.scheme = text
            elif key == b":authority" and text:
                req.authority = text
                if "host" in req.headers:
                    req.headers.set("host", text)
            elif key == b":path" and text.startswith("/"):
                req.path = text
            else:
                raise BadHeader(f"{key!r} cannot be set to {text!r}")
        elif self.kind == MapType.HTTP_RESPONSE_HEADERS and key == b":status":
            if ctx.response is None or not text.isdigit() or not 100 <= int(text) <= 599:
                raise BadHeader(f":status cannot be set to {text!r}")
            ctx.response.status = int(text)
        else:
            raise BadHeader(f"{key!r} is not a pseudo-header of this map")

    # -- the ABI's operations ---------------------------------------------------------------

    def pairs(self) -> list[tuple[bytes, bytes]]:
        return self._pseudo() + self.headers.raw

    def get(self, key: bytes) -> bytes | None:
        key = key.lower()
        if key.startswith(b":"):
            return self._pseudo_value(key)
        return self.headers.get_raw(key)

    def _pseudo_value(self, key: bytes) -> bytes | None:
        ctx = self.stream.ctx
        if self.kind == MapType.HTTP_REQUEST_HEADERS:
            req = ctx.request
            if key == b":path":
                text = req.path
            elif key == b":method":
                text = req.method
            elif key == b":authority":
                text = req.authority or (req.headers.get("host") or "")
            elif key == b":scheme":
                text = req.scheme
            else:
                return None
            return text.encode("latin-1")
        if self.kind == MapType.HTTP_RESPONSE_HEADERS and ctx.response is not None:
            return str(ctx.response.status).encode() if key == b":status" else None
        return None

    def add(self, key: bytes, value: bytes) -> None:
        key = key.lower()
        if key.startswith(b":"):
            self._set_pseudo(key, value)
        else:
            self.headers.add(key, _check(value))

    def replace(self, key: bytes, value: bytes) -> None:
        key = key.lower()
        if key.startswith(b":"):
            self._set_pseudo(key, value)
        else:
            self.headers.set(key, _check(value))

    def remove(self, key: bytes) -> None:
        key = key.lower()
        if not key.startswith(b":"):  # a head always has its pseudo-headers
            self.headers.remove(key)

    def set_pairs(self, pairs: list[tuple[bytes, bytes]]) -> None:
        regular: list[tuple[bytes, bytes]] = []
        for name, v in pairs:
            key = name.lower()
            if key.startswith(b":"):
                self._set_pseudo(key, v)
            else:
                regular.append((key, _check(v)))
        self.headers.raw[:] = regular


def header_map(stream: StreamState, kind: int) -> HeaderMap | None:
    """Map ``kind`` of ``stream``, or ``None`` when the stream has no such map (yet)."""
    ctx = stream.ctx
    if kind == MapType.HTTP_REQUEST_HEADERS:
        return HeaderMap(stream, kind, ctx.request.headers)
    if kind == MapType.HTTP_RESPONSE_HEADERS:
        return None if ctx.response is None else HeaderMap(stream, kind, ctx.response.headers)
    if kind == MapType.HTTP_REQUEST_TRAILERS and stream.request_trailers is not None:
        return HeaderMap(stream, kind, stream.request_trailers)
    if kind == MapType.HTTP_RESPONSE_TRAILERS and stream.response_trailers is not None:
        return HeaderMap(stream, kind, stream.response_trailers)
    return None
