"""Micro benchmark: CPU cost of one exchange through the core, with no sockets.

Drives ``plait.core.exchange.driver.serve`` with an in-memory downstream and an
upstream pool whose stream answers at once, so the figure is plait's own
per-request Python cost (chain driver, router, exchange, both codecs), the
part that decides throughput on the hot path. Run by hand:

    .venv/bin/python -m benchmarks.exchange_bench [N_FILTERS | res ...]

``res`` measures the default resilience stack (HTTPRoute ``retry`` + a
``BackendTrafficPolicy``: retry, circuit breaker, P2C peak-EWMA) with no other filter.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from plait.core.codec import (
    H1ClientCodec,
    H1ServerCodec,
    RequestReceived,
    ResponseReceived,
)
from plait.core.config import load_config
from plait.core.exchange.driver import serve
from plait.core.runtime import Runtime
from plait.plugins import load_filter_types
from plait.sdk import ConnectionContext, Headers, ResponseHead

REQUEST = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 100\r\nConnection: keep-alive\r\n\r\n" + b"x" * 100
)

CONFIG = """
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: upstream}
spec:
  ports: [{name: http, port: 80, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: 9}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: bench}
spec:
  egress:
  - port: {number: 18080, protocol: http}
    service: upstream
    filters: FILTERS
"""


class _Down:
    """An in-memory downstream that frames the response like the real connection."""

    def __init__(self) -> None:
        self.codec = H1ServerCodec()
        self.conn_ctx = ConnectionContext(peer_address=("127.0.0.1", 1), local_address=("", 0))
        self.response_started = False
        self.closing = False
        self.out = b""

    def send_response(self, head: ResponseHead, *, end_stream: bool, body: bytes = b"") -> None:
        self.response_started = True
        self.codec.send_response(head, end_stream=end_stream, body=body)
        self.out = self.codec.data_to_send()


class _UpStream:
    reused = True

    def __init__(self) -> None:
        self.codec = H1ClientCodec()

    def send_head(
        self, head: Any, *, end_stream: bool, body: bytes = b"", upgrade: bool = False
    ) -> None:
        self.codec.send_request(head, end_stream=end_stream, body=body)
        self.codec.data_to_send()

    async def read_event(self) -> ResponseReceived:
        (ev,) = self.codec.receive_data(RESPONSE)
        assert isinstance(ev, ResponseReceived)
        return ev

    def finish(self, complete: bool) -> None:
        pass

    def reset(self) -> None:
        pass


class _Pool:
    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.key = endpoint.key
        self.stream = _UpStream()

    async def open_stream(self, *, fresh: bool = False) -> _UpStream:
        return self.stream

    def take(self) -> _UpStream:
        return self.stream


async def _run(n_filters: int, n: int, resilience: bool = False) -> float:
    import tempfile
    from pathlib import Path

    filters = "[" + ", ".join(["{type: bench-passthrough}"] * n_filters) + "]"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        from benchmarks._configs import RESILIENCE

        path.write_text(CONFIG.replace("FILTERS", filters) + (RESILIENCE if resilience else ""))
        from benchmarks import passthrough_filter

        types = load_filter_types(passthrough_filter)
        runtime = Runtime(load_config([path], types))
    lrt = runtime.snapshot.listeners["outbound|18080"]
    for crt in runtime.snapshot.clusters.values():
        crt.pools = [_Pool(p.endpoint) for p in crt.pools]  # type: ignore[misc]
        crt._next = lambda c=crt: c.pools[0]
        crt.by_key = {p.key: p for p in crt.pools}
    down = _Down()
    server = down.codec
    t0 = time.process_time()
    for _ in range(n):
        (ev,) = server.receive_data(REQUEST)
        assert isinstance(ev, RequestReceived)
        await serve(lrt, down, ev)  # type: ignore[arg-type]
    elapsed = time.process_time() - t0
    assert down.out.startswith(b"HTTP/1.1 200"), down.out
    _ = Headers
    return elapsed / n * 1e6


def main() -> None:
    for arg in sys.argv[1:] or ["0", "5"]:
        res = arg == "res"
        k = 0 if res else int(arg)
        us = anyio.run(
            _run, k, int(os.environ.get("N", "20000")), res, backend_options={"use_uvloop": True}
        )
        what = "retry + breaker + P2C-EWMA" if res else f"{k} pass-through filters"
        print(f"{what}: {us:6.1f} us CPU per request")


if __name__ == "__main__":
    main()
