"""The OTLP encoding of finished spans for the SDK's exporters, written as protobuf bytes.

Theory of operation
-------------------
The OpenTelemetry SDK's OTLP exporters (HTTP/protobuf and gRPC) turn a batch of
``ReadableSpan`` s into an ``ExportTraceServiceRequest`` with ``encode_spans``, which
builds a protobuf object per span, attribute and value from Python: about 34 µs a span
here. The exporters run on the SDK's export thread, but that thread holds the
interpreter lock while it encodes, so on a busy sidecar every microsecond of it is
taken from the event loop (measured: a sampled span cost the whole process ~110 µs).

:func:`encode_spans` has the same contract and writes the message's bytes directly
(OpenTelemetry's ``trace.proto``): a span is a join of byte strings, a string attribute
(key and value, the same on most spans of a listener) is encoded once and kept, the
resource and the scope are encoded once per batch. The bytes are then parsed into the
``ExportTraceServiceRequest`` the exporter expects (in C), so everything after the
encoding (the exporter's transport, headers, compression, retries, the gRPC stub) is
the SDK's own, unchanged.

The SDK's ``encode_spans`` stays the reference and the fallback: a batch this encoder
does not cover (events, links, an attribute value that is not ``str``, ``bool``,
``int`` in the int64 range or ``float``, spans of several resources or scopes) is
handed to it whole; the tests check this encoder's output against it field for field.
:func:`install` points the exporter modules at :func:`encode_spans` (they call it by
its module-global name); a module whose ``encode_spans`` is not the SDK's (a later SDK
that moved it) is left as it is, and the SDK encodes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["encode_bytes", "encode_spans", "install", "sdk_encode_spans"]

_fixed64: Final = struct.Struct("<Q").pack
_double: Final = struct.Struct("<d").pack
_CACHED: Final = 4096
_LONG: Final = 256
_INT64: Final = 1 << 63
_HAS_IS_REMOTE: Final = b"\x85\x01" + (0x100).to_bytes(4, "little")
_IS_REMOTE: Final = b"\x85\x01" + (0x300).to_bytes(4, "little")
"""``Span.flags`` (field 16, fixed32): the context has its is-remote bit, and it is set."""


class _Unsupported(Exception):
    """A value or span shape this encoder leaves to the SDK."""


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is its key byte(s)."""
    return tag + _varint(len(payload)) + payload


def _any_value(value: object) -> bytes:
    """An ``AnyValue`` message (its content)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise _Unsupported("an int outside int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    raise _Unsupported(type(value).__name__)


def _key_value(key: str, value: object) -> bytes:
    """A ``KeyValue`` message (its content)."""
    if type(key) is not str:
        raise _Unsupported("a key that is not a str")
    return _len(b"\x0a", key.encode("utf-8")) + _len(b"\x12", _any_value(value))


class _Encoder:
    """Keeps the encoded string and int attributes between batches (bounded)."""

    def __init__(self) -> None:
        self._attrs: dict[tuple[str, str | int], bytes] = {}

    def attributes(self, tag: bytes, attrs: Any) -> list[bytes]:
        """The ``KeyValue`` fields (``tag``: their field's key) of a mapping."""
        if not attrs:
            return []
        out = []
        cache = self._attrs
        for key, value in attrs.items():
            kind = type(value)
            if kind is str or kind is int:  # not bool (True == 1): a bool is encoded anew
                field = cache.get((key, value))
                if field is None:
                    field = _len(tag, _key_value(key, value))
                    if kind is int or len(value) <= _LONG:
                        if len(cache) >= _CACHED:
                            cache.clear()
                        cache[(key, value)] = field
            else:
                field = _len(tag, _key_value(key, value))
            out.append(field)
        return out

    def span(self, span: ReadableSpan) -> bytes:
        """A ``Span`` message (its content)."""
        if span.events or span.links or span.dropped_events or span.dropped_links:
            raise _Unsupported("events or links")
        ctx = span.context
        parent = span.parent
        parts = [
            b"\x0a\x10", ctx.trace_id.to_bytes(16, "big"),
            b"\x12\x08", ctx.span_id.to_bytes(8, "big"),
        ]  # fmt: skip
        state = ctx.trace_state
        if state:
            parts.append(_len(b"\x1a", ",".join(f"{k}={v}" for k, v in state.items()).encode()))
        if parent is not None:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_len(b"\x2a", span.name.encode("utf-8")))
        parts += (b"\x30", _varint(span.kind.value + 1))
        if span.start_time:
            parts += (b"\x39", _fixed64(span.start_time))
        if span.end_time:
            parts += (b"\x41", _fixed64(span.end_time))
        parts += self.attributes(b"\x4a", span.attributes)
        if span.dropped_attributes:
            parts += (b"\x50", _varint(span.dropped_attributes))
        status = span.status
        if status is not None:
            body = b""
            if status.description:
                body = _len(b"\x12", status.description.encode("utf-8"))
            if status.status_code.value:
                body += b"\x18" + _varint(status.status_code.value)
            parts.append(_len(b"\x7a", body))
        parts.append(_IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE)
        return _len(b"\x12", b"".join(parts))  # ScopeSpans.spans

    def scope(self, scope: Any) -> bytes:
        """``ScopeSpans.scope`` (field 1)."""
        if scope is None:
            return b"\x0a\x00"
        parts = []
        if scope.name:
            parts.append(_len(b"\x0a", scope.name.encode("utf-8")))
        if scope.version:
            parts.append(_len(b"\x12", scope.version.encode("utf-8")))
        parts += self.attributes(b"\x1a", scope.attributes)
        return _len(b"\x0a", b"".join(parts))

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The ``ExportTraceServiceRequest`` of one resource and one scope."""
        first = spans[0]
        resource, scope = first.resource, first.instrumentation_scope
        for span in spans:
            if span.resource is not resource or span.instrumentation_scope is not scope:
                raise _Unsupported("several resources or scopes")
        encoded = b"".join([self.span(span) for span in spans])
        scope_spans = self.scope(scope) + encoded
        if scope is not None and scope.schema_url:
            scope_spans += _len(b"\x1a", scope.schema_url.encode("utf-8"))
        resource_spans = _len(b"\x0a", b"".join(self.attributes(b"\x0a", resource.attributes)))
        resource_spans += _len(b"\x12", scope_spans)
        if resource.schema_url:
            resource_spans += _len(b"\x1a", resource.schema_url.encode("utf-8"))
        return _len(b"\x0a", resource_spans)


_ENCODER: Final = _Encoder()


def encode_bytes(spans: Sequence[ReadableSpan]) -> bytes | None:
    """The serialized ``ExportTraceServiceRequest`` of ``spans``; ``None`` when this
    encoder leaves them to the SDK's."""
    if not spans:
        return b""
    try:
        return _ENCODER.request(spans)
    except (_Unsupported, UnicodeEncodeError):  # the SDK's encoder has the last word
        return None


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The SDK's ``encode_spans``, computed from :func:`encode_bytes` when it can be."""
    data = encode_bytes(spans)
    if data is None:
        return sdk_encode_spans(spans)
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(data)
    return request


def install(module: ModuleType) -> bool:
    """Make an SDK exporter module encode with :func:`encode_spans`; ``False`` (and
    nothing changed) if the module's ``encode_spans`` is not the SDK's."""
    current = getattr(module, "encode_spans", None)
    if current is encode_spans:
        return True
    if current is not sdk_encode_spans:
        return False
    module.encode_spans = encode_spans  # type: ignore[attr-defined]
    return True
