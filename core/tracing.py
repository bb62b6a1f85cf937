"""Distributed tracing: one span per request and direction, sampled first, exported over OTLP.

Theory of operation
-------------------
When a stream begins on a listener of a sidecar whose config has ``tracing``,
``Exchange.begin`` makes the sampling decision (:func:`.trace_context.decide`) and,
for a sampled request only, asks :meth:`Tracing.span` for its span;
:meth:`Tracing.end` ends it when the stream is finished (where the access-log
line is made). An inbound listener makes a SERVER span, an outbound
one a CLIENT span; each injects its own span's context into the request it
forwards, so the next hop's span is its child. An app that forwards the trace
headers from the request it serves to the requests it makes links the hops.

The sampling decision comes before any SDK object (:func:`.trace_context.decide`,
compiled with the hot path): the caller's sampled flag is followed (parent-based);
B3 debug or ``x-plait-trace: 1`` forces sampling; a request without a caller's
decision is sampled with probability ``sampling`` percent (Istio's meaning of
the field, default 1). An unsampled request with a caller's context is not
touched; one without gets a fresh unsampled ``traceparent``, so the hops behind
follow this decision instead of drawing their own. Only a sampled request
reaches the OpenTelemetry SDK.

A sampled request's span is kept as a small record while the request runs (its ids,
start time and the attributes known at the start) and becomes the SDK's span record,
a ``ReadableSpan``, once, when it ends: the record a tracer's span hands its processors
when it ends, built without the tracer's span around it. That span takes a lock and
validates each attribute on every call, and costs about 20 microseconds a request
here; the values this module sets are strings and ints by construction. The SDK's
span limits (``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` and the others, read by
``SpanLimits``) still apply: when one is set, the attributes go through the SDK's
``BoundedAttributes``, which enforces them. The resource (``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_SERVICE_NAME``) comes from the SDK's ``Resource.create``.

Ended spans go to a ``BatchSpanProcessor`` whose worker thread exports them with the
SDK's OTLP exporter (HTTP/protobuf, or gRPC; ``OTEL_EXPORTER_OTLP_*`` settings, retries
and the ``OTEL_BSP_*`` batch settings as the SDK reads them), off the event loop. The
exporter encodes a batch with ``otlp_encode.encode_spans`` (the protobuf written as bytes,
the SDK's ``encode_spans`` its reference and fallback): that thread holds the interpreter
lock while it encodes, so its time is the event loop's too.
:meth:`Tracing.close` flushes and stops it; the runtime calls it on shutdown, and when
a reload changes the tracing config (then on a short-lived thread, so the loop never
waits for a collector).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from plait.sdk import StreamContext

from . import otlp_encode
from .config._model import TracingConfig
from .trace_context import Parent, inject

__all__ = ["Tracing"]

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_SCOPE: Final = InstrumentationScope("plait")
_UNSET: Final = Status(StatusCode.UNSET)
_bits: Final = random.getrandbits
_now_ns: Final = time.time_ns


class _Open:
    """A sampled request's span while the request runs."""

    __slots__ = ("attrs", "inbound", "parent", "span_id", "start", "trace_id")

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent: Parent | None,
        inbound: bool,
        attrs: dict[str, str | int],
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent = parent
        self.inbound = inbound
        self.attrs = attrs
        self.start = _now_ns()


class Tracing:
    """The tracer of one sidecar process; see the module docstring."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.ratio = config.sampling / 100.0
        """The probability of sampling a request that carries no caller's decision."""
        self._resource = Resource.create({"service.name": config.service})
        limits = SpanLimits()
        self._max_attributes = limits.max_span_attributes
        self._max_length = limits.max_span_attribute_length
        self._processor = BatchSpanProcessor(_exporter(config))
        self._closed = False

    def span(
        self, ctx: StreamContext, inbound: bool, listener: str, parent: Parent | None
    ) -> _Open:
        """The span of a sampled request (a child of ``parent``, or a new trace); the
        request then carries its context to the next hop."""
        req = ctx.request
        attrs: dict[str, str | int] = {
            "http.request.method": req.method,
            "url.path": req.path,
            "server.address": req.authority or "",
            "plait.direction": "inbound" if inbound else "outbound",
            "plait.listener": listener,
        }
        peer = ctx.connection.peer_identity
        if peer is not None and peer.spiffe_id:  # mTLS verified the caller
            attrs["plait.source.identity"] = peer.spiffe_id
        trace_id = parent.trace_id if parent is not None else _new_id(128)
        span = _Open(trace_id, _new_id(64), parent, inbound, attrs)
        inject(req.headers, trace_id, span.span_id, True, parent)
        return span

    def end(
        self,
        span: _Open,
        ctx: StreamContext,
        attempts: int,
        inbound: bool,
        identity: str | None,
        peer: str | None,
    ) -> None:
        """Set what the stream's end knows (route, backend, status, reason) and end it.

        ``identity`` is this sidecar's SPIFFE ID; ``peer`` (outbound) the upstream server's,
        verified by the TLS handshake, when it answered over mTLS."""
        end = _now_ns()
        req = ctx.request
        status = ctx.response.status if ctx.response is not None else 0
        attrs = span.attrs
        name = f"{req.method} {attrs['plait.listener']}"
        if ctx.route_name:
            name = f"{req.method} {ctx.route_name}"
            attrs["plait.route"] = ctx.route_name
        if ctx.cluster:
            attrs["plait.upstream.cluster"] = ctx.cluster
        if ctx.upstream_address:
            attrs["plait.upstream.address"] = ctx.upstream_address
        if identity is not None:  # this sidecar's own identity
            attrs["plait.destination.identity" if inbound else "plait.source.identity"] = identity
        if peer is not None:
            attrs["plait.destination.identity"] = peer
        attrs["http.response.status_code"] = status
        attrs["plait.retries"] = max(attempts - 1, 0)
        reason = ctx.failure_reason
        if reason is not None:
            attrs["plait.failure_reason"] = reason
        outcome = _UNSET
        if reason is not None or status >= 500 or status == 0:
            outcome = Status(StatusCode.ERROR, reason or f"status {status}")
        parent = span.parent
        state = _state(parent)
        self._processor.on_end(
            ReadableSpan(
                name,
                SpanContext(span.trace_id, span.span_id, False, _SAMPLED, state),
                None
                if parent is None
                else SpanContext(parent.trace_id, parent.span_id, True, _SAMPLED, state),
                self._resource,
                self._bounded(attrs),
                kind=SpanKind.SERVER if inbound else SpanKind.CLIENT,
                status=outcome,
                start_time=span.start,
                end_time=end,
                instrumentation_scope=_SCOPE,
            )
        )

    def _bounded(self, attrs: dict[str, str | int]) -> Attributes:
        """``attrs`` within the SDK's span limits (as they are by default: as they came)."""
        if self._max_length is None and (
            self._max_attributes is None or len(attrs) <= self._max_attributes
        ):
            return attrs
        return BoundedAttributes(
            self._max_attributes, attrs, immutable=True, max_value_len=self._max_length
        )

    def close(self) -> None:
        """Export what is waiting and stop the export thread (once)."""
        if not self._closed:
            self._closed = True
            self._processor.shutdown()  # type: ignore[no-untyped-call]

    def close_later(self) -> None:
        """:meth:`close` on a thread of its own (a reload must not wait for the collector)."""
        threading.Thread(target=self.close, name="plait-trace-close", daemon=True).start()


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.protocol == "grpc":  # imported only when used: it brings grpc's channel stack
        from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter

        otlp_encode.install(grpc_exporter)
        scheme, _, target = config.endpoint.partition("://")
        return grpc_exporter.OTLPSpanExporter(
            endpoint=target.rstrip("/"), insecure=scheme == "http"
        )
    otlp_encode.install(http_exporter)
    return OTLPSpanExporter(endpoint=config.endpoint.rstrip("/") + "/v1/traces")


def _new_id(bits: int) -> int:
    """A random trace (128 bits) or span (64 bits) id, never zero (W3C: invalid)."""
    while True:
        value = _bits(bits)
        if value:
            return value


def _state(parent: Parent | None) -> TraceState | None:
    """The caller's ``tracestate``, which the span carries on (as the SDK's samplers do)."""
    if parent is None or not parent.tracestate:
        return None
    return TraceState.from_header([parent.tracestate])
