"""A sidecar's access log and tracing → the HttpConnectionManager's ``access_log``/``tracing``.

Envoy carries both on the connection manager, so plait repeats the sidecar-wide settings on
every HTTP listener (the access log on every ``TcpProxy`` too); the decoder checks that the
listeners agree.

* Access log: one ``envoy.access_loggers.file`` ``FileAccessLog{path}``. Sampling below 100 %
  is a ``runtime_filter`` whose ``percent_sampled`` is the share of requests logged (in
  millionths). plait reads it as the share of *successful* requests: failed ones are always
  logged (an Envoy would sample those too).
* Tracing: ``Tracing{random_sampling: Percent, provider: envoy.tracers.opentelemetry}`` whose
  ``OpenTelemetryConfig`` names the collector: ``http_service.http_uri.uri`` =
  ``ENDPOINT/v1/traces`` for OTLP/HTTP, or ``grpc_service.google_grpc.target_uri`` =
  ``HOST:PORT`` (with ``channel_credentials.ssl_credentials`` for ``https``) for gRPC, and
  ``service_name`` the spans' ``service.name``.
"""

from __future__ import annotations

from typing import Final

from envoy.config.accesslog.v3 import accesslog_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import (  # type: ignore[import-untyped]
    http_service_pb2,
    http_uri_pb2,
)
from envoy.config.trace.v3 import (  # type: ignore[import-untyped]
    http_tracer_pb2,
    opentelemetry_pb2,
)
from envoy.extensions.access_loggers.file.v3 import file_pb2  # type: ignore[import-untyped]
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # type: ignore[import-untyped]
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2  # type: ignore[import-untyped]
from google.protobuf import duration_pb2  # type: ignore[import-untyped]

from plait.core.config import MeshConfig, TracingConfig
from plait.core.xds.wire import (
    ACCESS_LOG_FILE,
    ACCESS_LOG_SAMPLING_KEY,
    OTEL_TRACER,
    OTLP_TRACES_PATH,
)

from ._encode_base import Message, pack

__all__ = ["access_logs", "tracing"]

_EXPORT_TIMEOUT: Final = 10  # seconds: the OTLP exporters' default


def access_logs(cfg: MeshConfig) -> list[Message]:
    """The ``access_log`` list of a listener of ``cfg`` (empty: no access log)."""
    if cfg.access_log is None:
        return []
    log = accesslog_pb2.AccessLog(
        name=ACCESS_LOG_FILE, typed_config=pack(file_pb2.FileAccessLog(path=cfg.access_log))
    )
    if cfg.access_log_sampling < 100.0:
        runtime = log.filter.runtime_filter
        runtime.runtime_key = ACCESS_LOG_SAMPLING_KEY
        runtime.percent_sampled.numerator = round(cfg.access_log_sampling * 10_000)
        runtime.percent_sampled.denominator = percent_pb2.FractionalPercent.MILLION
    return [log]


def tracing(t: TracingConfig) -> Message:
    """The connection manager's ``tracing`` for ``t``."""
    otel = opentelemetry_pb2.OpenTelemetryConfig(service_name=t.service)
    if t.protocol == "grpc":
        scheme, _, target = t.endpoint.partition("://")
        google = otel.grpc_service.google_grpc
        google.target_uri = target.rstrip("/")
        google.stat_prefix = "otlp"
        if scheme == "https":
            google.channel_credentials.ssl_credentials.SetInParent()
        otel.grpc_service.timeout.CopyFrom(duration_pb2.Duration(seconds=_EXPORT_TIMEOUT))
    else:
        otel.http_service.CopyFrom(
            http_service_pb2.HttpService(
                http_uri=http_uri_pb2.HttpUri(
                    uri=t.endpoint.rstrip("/") + OTLP_TRACES_PATH,
                    cluster="otlp",
                    timeout=duration_pb2.Duration(seconds=_EXPORT_TIMEOUT),
                )
            )
        )
    out = hcm_pb2.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(name=OTEL_TRACER, typed_config=pack(otel))
    )
    out.random_sampling.value = t.sampling
    return out
