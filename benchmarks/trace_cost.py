"""Micro benchmark: what tracing adds to one request, in-process.

Runs what ``Exchange.begin`` and ``finish`` do for tracing (the sampling decision,
:func:`plait.core.trace_context.decide`; for a sampled request
:meth:`plait.core.tracing.Tracing.span` and ``end``), on a fresh request head each time, and
subtracts the cost of making that head. Cases: a request without a trace context
that is not sampled (a fresh unsampled ``traceparent`` is written), one whose
caller did not sample (nothing is written), one whose caller sampled (an SDK span
is made, its context injected, and the span ended into the batch queue). The
export itself runs on the SDK's thread and is not counted here; the collector
endpoint is a port where nothing listens. Run by hand:

    .venv/bin/python -m benchmarks.trace_cost            # N=100000
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from plait.core.config._model import TracingConfig
from plait.core.trace_context import decide
from plait.core.tracing import Tracing
from plait.sdk import ConnectionContext, Headers, RequestHead, StreamContext

_BASE = [(b"host", b"svc:80"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
_CONN = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 8080))


def _ctx(extra: list[tuple[bytes, bytes]]) -> StreamContext:
    head = RequestHead(
        method="GET", path="/bench", authority="svc:80", headers=Headers(_BASE + extra)
    )
    return StreamContext(connection=_CONN, request=head)


def _per_call(n: int, fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    logging.disable(logging.WARNING)  # the exporter's complaints about the dead endpoint
    n = int(os.environ.get("N", "100000"))
    tracing = Tracing(TracingConfig(endpoint="http://127.0.0.1:9", sampling=0.0))
    cases = {
        "no context, not sampled": [],
        "caller did not sample": [
            (b"traceparent", b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-00")
        ],
        "caller sampled (SDK span)": [
            (b"traceparent", b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01")
        ],
    }
    for name, extra in cases.items():
        base = _per_call(n, lambda extra=extra: _ctx(extra))  # type: ignore[misc]

        def one(extra: list[tuple[bytes, bytes]] = extra) -> None:
            ctx = _ctx(extra)
            decision = decide(ctx.request.headers, tracing.ratio)
            if decision is not False:
                parent = None if decision is True else decision
                tracing.end(tracing.span(ctx, True, "in", parent), ctx, 1, True, None, None)

        k = n // 10 if name.endswith("(SDK span)") else n
        for _ in range(2):  # warm up, then measure
            cost = _per_call(k, one) - base
        print(f"{name:28s} {cost:6.2f} us CPU per request")
    tracing.close()


if __name__ == "__main__":
    main()
