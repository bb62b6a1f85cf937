"""The HttpConnectionManager's ``access_log``/``tracing`` → the sidecar's access log and tracer.

The inverse of the control plane's ``_encode_telemetry``: at most one
``envoy.access_loggers.file`` access log (its ``runtime_filter.percent_sampled``, if any, is
the share of successful requests logged), and a ``tracing`` whose provider is
``envoy.tracers.opentelemetry`` with either an ``http_service`` (OTLP/HTTP, its URI ending in
``/v1/traces``) or a ``grpc_service.google_grpc`` (gRPC; ``ssl_credentials`` for TLS). Any
other field set is refused, naming it.
"""

from __future__ import annotations

from typing import Any, Final

from envoy.config.trace.v3 import opentelemetry_pb2  # type: ignore[import-untyped]
from envoy.extensions.access_loggers.file.v3 import file_pb2  # type: ignore[import-untyped]
from envoy.type.v3 import percent_pb2  # type: ignore[import-untyped]

from plait.core.config import TracingConfig
from plait.core.config._fields import Loc

from ._decode_base import Message, only, sub, unpack
from .wire import ACCESS_LOG_SAMPLING_KEY, OTEL_TRACER, OTLP_TRACES_PATH

__all__ = ["AccessLogSetting", "decode_access_log", "decode_tracing"]

AccessLogSetting = tuple[str, float]
"""An access log's path and its sampling percent."""

_DENOMINATORS: Final = {
    percent_pb2.FractionalPercent.HUNDRED: 100,
    percent_pb2.FractionalPercent.TEN_THOUSAND: 10_000,
    percent_pb2.FractionalPercent.MILLION: 1_000_000,
}


def decode_access_log(logs: Any, loc: Loc) -> AccessLogSetting | None:
    if not logs:
        return None
    if len(logs) > 1:
        raise sub(loc, "access_log").expected("at most one access log", len(logs))
    aloc = sub(loc, "access_log[0]")
    log = logs[0]
    only(log, ("name", "typed_config", "filter"), aloc)
    file_log = unpack(log.typed_config, file_pb2.FileAccessLog, aloc)
    only(file_log, ("path",), aloc)
    sampling = 100.0
    if log.HasField("filter"):
        floc = sub(aloc, "filter")
        only(log.filter, ("runtime_filter",), floc)
        runtime = log.filter.runtime_filter
        rloc = sub(floc, "runtime_filter")
        only(runtime, ("runtime_key", "percent_sampled"), rloc)
        if runtime.runtime_key != ACCESS_LOG_SAMPLING_KEY:
            raise sub(rloc, "runtime_key").expected(ACCESS_LOG_SAMPLING_KEY, runtime.runtime_key)
        pct = runtime.percent_sampled
        sampling = min(100.0, pct.numerator * 100.0 / _DENOMINATORS[pct.denominator])
    return str(file_log.path), sampling


def decode_tracing(hcm: Message, loc: Loc) -> TracingConfig | None:
    if not hcm.HasField("tracing"):
        return None
    tloc = sub(loc, "tracing")
    t = hcm.tracing
    only(t, ("random_sampling", "provider"), tloc)
    sampling = t.random_sampling.value if t.HasField("random_sampling") else 100.0
    if not 0 <= sampling <= 100:
        raise sub(tloc, "random_sampling").expected("a percentage from 0 to 100", sampling)
    ploc = sub(tloc, "provider")
    if t.provider.name != OTEL_TRACER:
        raise sub(ploc, "name").expected(OTEL_TRACER, t.provider.name)
    only(t.provider, ("name", "typed_config"), ploc)
    otel = unpack(t.provider.typed_config, opentelemetry_pb2.OpenTelemetryConfig, ploc)
    only(otel, ("grpc_service", "http_service", "service_name"), ploc)
    service = otel.service_name or "plait"
    if otel.HasField("http_service"):
        uri = str(otel.http_service.http_uri.uri)
        if not uri.startswith(("http://", "https://")) or not uri.endswith(OTLP_TRACES_PATH):
            raise sub(ploc, "http_service.http_uri.uri").expected(
                f"http://HOST:PORT{OTLP_TRACES_PATH}", uri
            )
        endpoint = uri.removesuffix(OTLP_TRACES_PATH)
        return TracingConfig(endpoint=endpoint, sampling=sampling, service=service)
    if otel.HasField("grpc_service") and otel.grpc_service.HasField("google_grpc"):
        google = otel.grpc_service.google_grpc
        target = str(google.target_uri)
        if not target or "/" in target:
            raise sub(ploc, "grpc_service.google_grpc.target_uri").expected("HOST:PORT", target)
        scheme = "https" if google.HasField("channel_credentials") else "http"
        return TracingConfig(
            endpoint=f"{scheme}://{target}", protocol="grpc", sampling=sampling, service=service
        )
    raise ploc.error("expected an http_service or a grpc_service.google_grpc collector")
