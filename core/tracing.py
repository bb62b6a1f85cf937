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
reaches the OpenTelemetry SDK (a span costs 13-19 microseconds there).

Spans go to a ``BatchSpanProcessor`` whose worker thread exports them with the
OTLP exporter (HTTP/protobuf, or gRPC), off the event loop. :meth:`Tracing.close` flushes
and stops it; the runtime calls it on shutdown, and when a reload changes the
tracing config (then on a short-lived thread, so the loop never waits for a
collector).
"""

from __future__ import annotations

import threading
from typing import Final

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from plait.sdk import StreamContext

from .config._model import TracingConfig
from .trace_context import Parent, inject

__all__ = ["Tracing"]

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)


class Tracing:
    """The tracer of one sidecar process; see the module docstring."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.ratio = config.sampling / 100.0
        """The probability of sampling a request that carries no caller's decision."""
        self._provider = TracerProvider(
            sampler=ALWAYS_ON,  # the decision is made before the SDK is asked
            resource=Resource.create({"service.name": config.service}),
        )
        self._provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
        self._tracer = self._provider.get_tracer("plait")
        self._closed = False

    def span(self, ctx: StreamContext, inbound: bool, listener: str, parent: Parent | None) -> Span:
        """The span of a sampled request (a child of ``parent``, or a new trace); the
        request then carries its context to the next hop."""
        req = ctx.request
        attrs: dict[str, str] = {
            "http.request.method": req.method,
            "url.path": req.path,
            "server.address": req.authority or "",
            "plait.direction": "inbound" if inbound else "outbound",
            "plait.listener": listener,
        }
        peer = ctx.connection.peer_identity
        if peer is not None and peer.spiffe_id:  # mTLS verified the caller
            attrs["plait.source.identity"] = peer.spiffe_id
        span = self._tracer.start_span(
            f"{req.method} {listener}",
            context=_context(parent),
            kind=SpanKind.SERVER if inbound else SpanKind.CLIENT,
            attributes=attrs,
        )
        sc = span.get_span_context()
        inject(req.headers, sc.trace_id, sc.span_id, True, parent)
        return span

    def end(
        self,
        span: Span,
        ctx: StreamContext,
        attempts: int,
        inbound: bool,
        identity: str | None,
        peer: str | None,
    ) -> None:
        """Set what the stream's end knows (route, backend, status, reason) and end it.

        ``identity`` is this sidecar's SPIFFE ID; ``peer`` (outbound) the upstream server's,
        verified by the TLS handshake, when it answered over mTLS."""
        status = ctx.response.status if ctx.response is not None else 0
        attrs: dict[str, str | int] = {}
        if ctx.route_name:
            span.update_name(f"{ctx.request.method} {ctx.route_name}")
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
        span.set_attributes(attrs)  # one call: each set_attribute takes the span's lock
        if reason is not None or status >= 500 or status == 0:
            span.set_status(Status(StatusCode.ERROR, reason or f"status {status}"))
        span.end()

    def close(self) -> None:
        """Export what is waiting and stop the export thread (once)."""
        if not self._closed:
            self._closed = True
            self._provider.shutdown()

    def close_later(self) -> None:
        """:meth:`close` on a thread of its own (a reload must not wait for the collector)."""
        threading.Thread(target=self.close, name="plait-trace-close", daemon=True).start()


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.protocol == "grpc":  # imported only when used: it brings grpc's channel stack
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        scheme, _, target = config.endpoint.partition("://")
        return GrpcSpanExporter(endpoint=target.rstrip("/"), insecure=scheme == "http")
    return OTLPSpanExporter(endpoint=config.endpoint.rstrip("/") + "/v1/traces")


def _context(parent: Parent | None) -> Context:
    if parent is None:
        return Context()
    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    remote = SpanContext(parent.trace_id, parent.span_id, True, _SAMPLED, state)
    return set_span_in_context(NonRecordingSpan(remote))
