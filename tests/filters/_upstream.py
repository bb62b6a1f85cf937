"""A scripted upstream for upstream-layer unit tests: no sockets, real layer code.

:func:`through` runs the layers as the proxy does (the core's walk of their
policies, ``core/exchange/tries.py``, performed by the core's driver), with
:class:`Script` as the try.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from plait.core.config import FilterEntry
from plait.core.exchange.actions import Steps, drive
from plait.core.exchange.chain import Chain
from plait.core.exchange.tries import tries
from plait.sdk import (
    BufferedBody,
    EndpointInfo,
    FilterSpec,
    Headers,
    HttpFilter,
    ResponseHead,
    StreamContext,
    UpstreamCluster,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
)
from plait.sdk.testing import make_context, make_request

Outcome = int | UpstreamError | tuple[int, dict[str, str]]


def cluster(n: int = 3, name: str = "svc.default:80") -> UpstreamCluster:
    return UpstreamCluster(name, tuple(EndpointInfo(key=f"10.0.0.{i}:80") for i in range(n)))


class Script:
    """``call_next`` that answers each try from ``outcomes`` (the last one repeats) and
    records the requests it was given; the endpoint is the request's, else the first
    one not excluded (as the core picks)."""

    def __init__(self, upstream: UpstreamCluster, *outcomes: Outcome) -> None:
        self.upstream = upstream
        self.outcomes = list(outcomes)
        self.tries: list[UpstreamRequest] = []
        self.endpoints: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        self.tries.append(request)
        keys = [e.key for e in self.upstream.endpoints]
        key = request.endpoint or next((k for k in keys if k not in request.exclude), keys[0])
        ctx.upstream_address = key
        self.endpoints.append(key)
        self.bodies.append(await request.body.read_all())
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, UpstreamError):
            raise outcome
        status, headers = outcome if isinstance(outcome, tuple) else (outcome, {})
        head = ResponseHead(status=status, headers=Headers(list(headers.items())))
        return UpstreamResponse(head=head, body=BufferedBody(b""))


def context(upstream: UpstreamCluster, method: str = "GET", h2: bool = False) -> StreamContext:
    head = make_request(method)
    if h2:
        head.http_version = "2"
    return make_context(head, upstream_cluster=upstream, cluster=upstream.name)


def request(ctx: StreamContext, body: bytes = b"") -> UpstreamRequest:
    return UpstreamRequest(head=ctx.request, body=BufferedBody(body))


async def through(
    layers: Sequence[HttpFilter],
    ctx: StreamContext,
    request: UpstreamRequest,
    script: Script,
    timeout: float | None = None,
) -> UpstreamResponse:
    """The response after ``layers`` (outermost first) and their tries on ``script``,
    within the request's ``timeout`` seconds."""
    specs: list[FilterSpec[None]] = [
        FilterSpec(name=f"layer{i}", make=_maker(layer)) for i, layer in enumerate(layers)
    ]
    entries = [FilterEntry(name=spec.name, spec=spec, config=None) for spec in specs]
    run = Chain(entries).start(ctx)

    def terminal(request: UpstreamRequest) -> Steps:
        response: UpstreamResponse = yield script(ctx, request)
        return response

    deadline = time.monotonic() + timeout if timeout is not None else math.inf
    response: UpstreamResponse = await drive(tries(run, request, terminal, drive, deadline))
    return response


def _maker(layer: HttpFilter) -> Callable[[], HttpFilter]:
    def make() -> HttpFilter:
        return layer

    return make
