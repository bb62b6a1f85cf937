"""A small OTLP trace receiver, run in the test's process on a loopback port.

Over HTTP (:func:`otlp_receiver`) it accepts ``POST /v1/traces`` with a protobuf
``ExportTraceServiceRequest``; over gRPC (:func:`otlp_grpc_receiver`) the
``TraceService/Export`` call (both parsed with ``opentelemetry-proto``). It keeps
every span with its resource's ``service.name`` and answers an empty
``ExportTraceServiceResponse``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool
    status_message: str = ""
    trace_state: str = ""
    start_ns: int = 0
    end_ns: int = 0
    scope: str = ""
    resource: tuple[tuple[str, Any], ...] = ()


class Receiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                receiver._add(ExportTraceServiceRequest.FromString(body))
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _add(self, req: ExportTraceServiceRequest) -> None:
        for rs in req.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    span = ReceivedSpan(
                        service=str(res.get("service.name")),
                        name=s.name,
                        kind=KINDS.get(s.kind, str(s.kind)),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        error=s.status.code == 2,
                        status_message=s.status.message,
                        trace_state=s.trace_state,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        scope=ss.scope.name,
                        resource=tuple(sorted(res.items())),
                    )
                    with self._lock:
                        self.spans.append(span)

    def wait(self, n: int, timeout: float = 15.0) -> list[ReceivedSpan]:
        """At least ``n`` spans (all received so far), or an AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= n:
                    return list(self.spans)
            time.sleep(0.05)
        raise AssertionError(f"expected {n} spans, got {self.spans}")


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    r = Receiver()
    t = threading.Thread(target=r.server.serve_forever, daemon=True)
    t.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        t.join(5)


class _Servicer(TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
        self.receiver._add(request)
        return ExportTraceServiceResponse()


@contextmanager
def otlp_grpc_receiver() -> Iterator[Receiver]:
    """The same receiver behind OTLP/gRPC (its HTTP server is not started)."""
    r = Receiver()
    r.server.server_close()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(_Servicer(r), server)  # type: ignore[no-untyped-call]
    r.port = server.add_insecure_port("127.0.0.1:0")
    r.endpoint = f"http://127.0.0.1:{r.port}"
    server.start()
    try:
        yield r
    finally:
        server.stop(grace=None).wait(5)
