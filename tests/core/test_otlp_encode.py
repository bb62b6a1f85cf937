"""plait's OTLP span encoding against the SDK's ``encode_spans``, its reference.

Every case compares the whole ``ExportTraceServiceRequest`` (parsed from plait's bytes)
with what the SDK builds for the same spans: equal messages, so a collector cannot tell
which encoder ran. Batches the encoder does not cover must come out of the SDK's.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from plait.core import otlp_encode
from plait.core.config._model import TracingConfig
from plait.core.tracing import Tracing

RESOURCE = Resource.create({"service.name": "svc", "deployment.environment": "test"})
SCOPE = InstrumentationScope("plait")
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _span(
    attrs: object = None,
    *,
    parent: SpanContext | None = None,
    state: TraceState | None = None,
    status: Status | None = None,
    kind: SpanKind = SpanKind.CLIENT,
    name: str = "GET route",
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    events: tuple[Event, ...] = (),
    links: tuple[Link, ...] = (),
) -> ReadableSpan:
    return ReadableSpan(
        name,
        SpanContext(0xABC << 100 | 7, 0x1234_5678_9ABC_DEF0, False, SAMPLED, state),
        parent,
        resource,
        {"http.request.method": "GET", "plait.retries": 0} if attrs is None else attrs,  # type: ignore[arg-type]
        events=events,
        links=links,
        kind=kind,
        status=Status(StatusCode.UNSET) if status is None else status,
        start_time=1_700_000_000_000_000_001,
        end_time=1_700_000_000_123_456_789,
        instrumentation_scope=scope,
    )


def _same(spans: list[ReadableSpan]) -> bool:
    data = otlp_encode.encode_bytes(spans)
    assert data is not None, "the fast path declined"
    same: bool = ExportTraceServiceRequest.FromString(data) == sdk_encode(spans)
    return same


REMOTE_PARENT = SpanContext(0xABC << 100 | 7, 0x77, True, SAMPLED, None)
LOCAL_PARENT = SpanContext(0xABC << 100 | 7, 0x78, False, SAMPLED, None)


@pytest.mark.parametrize(
    "span",
    [
        _span(),
        _span(parent=REMOTE_PARENT),
        _span(parent=LOCAL_PARENT),
        _span(state=TraceState([("vendor", "abc"), ("other", "x-1")]), parent=REMOTE_PARENT),
        _span(status=Status(StatusCode.ERROR, "upstream_timeout")),
        _span(status=Status(StatusCode.OK)),
        _span(kind=SpanKind.SERVER),
        _span(kind=SpanKind.INTERNAL, name=""),
        _span({}),
        _span({"a": True, "b": False, "c": -1, "d": 2**63 - 1, "e": -(2**63), "f": 1.5}),
        _span({"g": math.inf, "h": -0.0, "u": "ünïcødé ✓", "long": "x" * 5000, "empty": ""}),
        _span(BoundedAttributes(2, {"k1": "v1", "k2": "v2", "k3": "v3"}, immutable=True)),
        _span(name="GET ü"),
        _span(resource=Resource({}, schema_url="https://opentelemetry.io/schemas/1.21.0")),
        _span(scope=InstrumentationScope("plait", "1.2", "https://x/schema", {"a": "b"})),
        _span(scope=None),
    ],
)
def test_one_span_encodes_as_the_sdk_does(span: ReadableSpan) -> None:
    assert _same([span])


def test_a_batch_keeps_its_order_and_every_span() -> None:
    spans = [
        _span({"url.path": f"/p/{i}", "http.response.status_code": 200 + i % 3}) for i in range(300)
    ]
    assert _same(spans)
    assert _same(spans)  # again, from the kept attribute encodings


def test_a_bool_is_not_taken_for_the_int_it_equals() -> None:
    """``True == 1``: an encoding kept for the int 1 must not serve the bool (or back)."""
    assert _same([_span({"k": 1}), _span({"k": True}), _span({"k": 1}), _span({"k": False})])


ATTR_VALUES = st.one_of(
    st.text(max_size=40),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), ATTR_VALUES, max_size=8))
def test_any_scalar_attributes_encode_as_the_sdk_does(attrs: dict[str, object]) -> None:
    assert _same([_span(attrs)])


@pytest.mark.parametrize(
    "spans",
    [
        [_span(events=(Event("retry", {"n": 1}, timestamp=5),))],
        [_span(links=(Link(REMOTE_PARENT),))],
        [_span({"list": ["a", "b"]})],
        [_span({"big": 2**64})],
        [_span({"bytes": b"\x00\x01"})],
        [_span(), _span(resource=Resource.create({"service.name": "other"}))],
        [_span(), _span(scope=InstrumentationScope("other"))],
        [_span({"bad": "\ud800"})],
    ],
)
def test_what_the_fast_path_does_not_cover_comes_from_the_sdk(spans: list[ReadableSpan]) -> None:
    assert otlp_encode.encode_bytes(spans) is None
    assert otlp_encode.encode_spans(spans) == sdk_encode(spans)


def test_a_tracing_sidecar_exports_through_plait_s_encoder() -> None:
    """Both SDK exporters call ``encode_spans`` by their module's name for it: a sidecar
    that traces points them at plait's (the installed SDK must keep that shape, or this
    test says the fast path is gone)."""
    for protocol, module in (("http/protobuf", http_exporter), ("grpc", grpc_exporter)):
        tracing = Tracing(
            TracingConfig(endpoint="http://127.0.0.1:9", sampling=1.0, protocol=protocol)
        )
        try:
            assert module.encode_spans is otlp_encode.encode_spans, protocol
        finally:
            tracing.close()
    assert otlp_encode.install(http_exporter)  # installing again changes nothing


def test_a_module_with_another_encoder_is_left_alone() -> None:
    class Module:
        @staticmethod
        def encode_spans(spans: object) -> None:
            return None

    module = Module()
    assert not otlp_encode.install(module)  # type: ignore[arg-type]
    assert module.encode_spans is Module.encode_spans
