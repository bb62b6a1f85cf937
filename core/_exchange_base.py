"""The state of one exchange and the steps that talk to the upstream.

:class:`ExchangeBase` holds what one stream's exchange knows (listener runtime,
downstream, context, upstream streams taken, chain run) and the steps shared by
the fast path, the streaming path (``core/exchange.py``) and the inline path
(``core/_inline.py``): the end-of-stream bookkeeping, local replies, and the
upstream call (pick an endpoint, send, await the response head, one retry on a
stale keep-alive connection).

Invariant: every upstream stream taken is in ``upstreams`` until it is finished
(returned to its pool) or reset; :meth:`ExchangeBase.finish` resets what is left.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import (
    DownstreamProtocolError,
    Headers,
    LocalReply,
    MessageBody,
    NoHealthyUpstream,
    PlaitError,
    ResponseHead,
    StreamContext,
    UpstreamRequest,
    UpstreamReset,
    UpstreamResponse,
    UpstreamTimeout,
)

from ._bodies import ClientLeft, LocalReplyRaised, UpstreamBody
from ._errors import grpc_reply, is_grpc, primary
from ._streams import Downstream, UpstreamStream
from .chain import ChainRun
from .codec import InformationalReceived, ResponseReceived, StreamReset

if TYPE_CHECKING:
    from .runtime import ListenerRuntime
    from .upstream._manager import ClusterRuntime, Pool

__all__ = ["ExchangeBase", "local_reply_head"]

_monotonic: Final = time.monotonic  # compiled: a C static, not a module attribute lookup per call

log = logging.getLogger(__name__)


def local_reply_head(reply: LocalReply) -> tuple[ResponseHead, bytes]:
    """The head and body of a local reply. A reply with ``grpc-status`` is a gRPC
    trailers-only response: no body (the reason is in the header); a ``content-type``
    among the reply's headers replaces ``text/plain``."""
    grpc = any(name.lower() == "grpc-status" for name, _ in reply.headers)
    body = reply.body or (f"{reply.reason}\n".encode() if reply.reason and not grpc else b"")
    headers = Headers.from_lowercase_pairs(
        [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    )
    for name, value in reply.headers:
        if name.lower() == "content-type":
            headers.set(name, value)
        else:
            headers.add(name, value)
    if reply.reason:
        headers.set("x-plait-reason", reply.reason)
    return ResponseHead(status=reply.status, headers=headers), body


class ExchangeBase:
    __slots__ = (
        "ctx",
        "deadline",
        "down",
        "lrt",
        "pending_reply",
        "rule_timeouts",
        "run_",
        "tg",
        "upstreams",
    )

    def __init__(self, lrt: ListenerRuntime, down: Downstream, ctx: StreamContext) -> None:
        self.lrt = lrt
        self.down = down
        self.ctx = ctx
        self.upstreams: list[UpstreamStream] = []
        self.tg: anyio.abc.TaskGroup | None = None
        self.run_: ChainRun | None = None
        self.pending_reply: LocalReply | None = None
        self.rule_timeouts = lrt.config.timeouts
        self.deadline: float | None = None
        """When the request timeout ends (``anyio.current_time()`` clock), if it has one."""

    def failed(self, exc: Exception) -> None:
        """Answer an exception from any step the way :meth:`run` does (a plain call).
        An exception group from a task group is answered by its deciding error."""
        err = primary(exc)
        if isinstance(err, LocalReplyRaised):
            self.local_now(err.reply)
        elif isinstance(err, PlaitError):
            log.debug("stream %s: %s: %s", self.ctx.stream_id, err.reason, err)
            self.local_now(self.pending_reply or LocalReply(err.status_hint, reason=err.reason))
        else:
            log.error("stream %s failed: %r", self.ctx.stream_id, err, exc_info=err)
            self.local_now(LocalReply(500, reason="internal error"))

    def cancelled(self) -> None:
        """The stream is cancelled before it ended: the client left, or the drain's
        grace ran out. Its access-log line says which (``finish`` still runs)."""
        ctx = self.ctx
        if ctx.failure_reason is None:
            ctx.failure_reason = (
                "drain grace over" if self.lrt.runtime.draining else "client closed"
            )

    def finish(self) -> None:
        """The end-of-stream bookkeeping, exactly once per stream (callers own that)."""
        lrt, ctx = self.lrt, self.ctx
        for up in self.upstreams:
            up.reset()
        if self.run_ is not None:
            self.run_.complete()
        lrt.record(ctx, _monotonic() - ctx.started_at)
        lrt.runtime.stream_ended()

    async def local(self, reply: LocalReply) -> None:
        self.local_now(reply)

    def local_now(self, reply: LocalReply) -> None:
        ctx, down = self.ctx, self.down
        if is_grpc(ctx.request):
            reply = grpc_reply(reply)
        if reply.reason and ctx.failure_reason is None:
            ctx.failure_reason = reply.reason
        if down.response_started:
            down.reset()
            return
        head, body = local_reply_head(reply)
        ctx.response = head
        down.send_response(head, end_stream=True, body=body)

    def chosen_cluster(self) -> ClusterRuntime:
        """The cluster the request hooks chose (``ctx.cluster``); raises when there is none."""
        ctx = self.ctx
        if ctx.cluster is None:  # Gateway API: a rule without backends answers 500
            raise _NoBackend(f"route {ctx.route_name} has no backend")
        crt = self.lrt.snapshot.clusters.get(ctx.cluster)
        if crt is None:
            raise NoHealthyUpstream(f"unknown backend {ctx.cluster}")
        return crt

    def pool_for(self, request: UpstreamRequest, crt: ClusterRuntime | None = None) -> Pool:
        """The pool of the endpoint a layer chose, or of the cluster's next pick."""
        if crt is None:
            crt = self.chosen_cluster()
        pool = crt.pick_for(request.endpoint, request.exclude)
        self.ctx.upstream_address = pool.key
        return pool

    async def terminal(self, ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        """The innermost upstream call: pick an endpoint, send, await the response head."""
        crt = self.chosen_cluster()
        pool = self.pool_for(request, crt)
        per_try = self.rule_timeouts.backend_request
        if per_try or self.deadline is not None:
            deadline_header(request, crt.cluster.protocol.value == "grpc", per_try)
        if per_try:
            try:
                with anyio.fail_after(per_try):
                    return await self._attempt(pool, request)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"no response from {pool.endpoint.key} in {per_try}s"
                ) from None
        return await self._attempt(pool, request)

    async def _attempt(self, pool: Pool, request: UpstreamRequest) -> UpstreamResponse:
        stream = pool.take()  # a warm connection costs no coroutine
        if stream is None:
            stream = await pool.open_stream()
        return await self._send(pool, stream, request)

    async def _send(
        self, pool: Pool, stream: UpstreamStream, request: UpstreamRequest, *, sent: bool = False
    ) -> UpstreamResponse:
        """Send on ``stream`` (unless ``sent``: the request already went out on it);
        await the response head (one retry on a stale keep-alive)."""
        retry = True
        while True:
            if not sent:
                await self._write(stream, request)
            ev = await stream.read_event()
            while isinstance(ev, InformationalReceived):
                ev = await stream.read_event()
            response = self.received(stream, ev)
            if response is not None:
                return response
            # A reused keep-alive connection the upstream closed just before our request:
            # nothing was received, the body is in memory, so one more try is safe.
            if not (retry and stream.reused and request.body.whole is not None):
                break
            if not isinstance(ev, StreamReset):
                break
            retry, sent = False, False
            stream = await pool.open_stream(fresh=True)
        raise UpstreamReset("upstream closed the connection before responding")

    def write_now(self, stream: UpstreamStream, request: UpstreamRequest) -> bool:
        """Send a whole request without trailers; ``False`` (nothing sent) otherwise."""
        body = request.body
        whole = body.whole
        if whole is None or body.trailers is not None:
            return False
        self.upstreams.append(stream)
        if whole:
            _set_length(request.head.headers, len(whole))
        stream.send_head(request.head, end_stream=True, body=whole)
        return True

    async def _write(self, stream: UpstreamStream, request: UpstreamRequest) -> None:
        if self.write_now(stream, request):
            return
        self.upstreams.append(stream)
        body = request.body
        whole, trailers = body.whole, body.trailers
        if whole is not None and trailers is not None:
            request.head.headers.remove("content-length")
            stream.send_head(request.head, end_stream=False)
            await stream.send_data(whole, end_stream=False)
            stream.send_trailers(trailers)
        else:
            stream.send_head(request.head, end_stream=False)
            assert self.tg is not None
            self.tg.start_soon(self.pump_request, body, stream)

    def received(self, stream: UpstreamStream, ev: object) -> UpstreamResponse | None:
        """The response for the first final event on ``stream``; ``None`` (the stream is
        reset and dropped) when the upstream did not answer."""
        if isinstance(ev, ResponseReceived):
            if ev.end_stream:
                stream.finish(True)
                self.upstreams.remove(stream)
            body = UpstreamBody(self, stream, ev)
            if not ev.end_stream and self.ctx.cluster is not None:
                crt = self.lrt.snapshot.clusters.get(self.ctx.cluster)
                body.idle_timeout = crt.cluster.timeouts.stream_idle if crt is not None else None
            return UpstreamResponse(head=ev.head, body=body)
        stream.reset()
        self.upstreams.remove(stream)
        return None

    async def pump_request(self, body: MessageBody, stream: UpstreamStream) -> None:
        """Stream the request body upstream (runs in this exchange's task group)."""
        try:
            while chunk := await body.read():
                await stream.send_data(chunk, end_stream=False)
            if body.trailers is not None:
                stream.send_trailers(body.trailers)
            else:
                await stream.send_data(b"", end_stream=True)
        except LocalReplyRaised as exc:
            self.pending_reply = exc.reply
            stream.reset()
        except ClientLeft as gone:  # (one name per except type: mypyc types it once)
            log.debug("stream %s: request body: %s", self.ctx.stream_id, gone)
            stream.reset()  # the stream's cancellation follows
        except DownstreamProtocolError as bad:
            # Broken framing or a buffer limit: the upstream request is aborted, and the
            # answer is the client's error, not the upstream reset that follows.
            log.debug("stream %s: request body: %s", self.ctx.stream_id, bad)
            self.pending_reply = LocalReply(bad.status_hint, reason=bad.reason)
            stream.reset()
        except PlaitError as err:
            log.debug("stream %s: request body: %s", self.ctx.stream_id, err)
            stream.reset()


DEADLINE_HEADER: Final = "x-plait-timeout-ms"
"""The remaining time budget of a request, in milliseconds, sent to the next hop over
HTTP (gRPC upstreams get ``grpc-timeout``), so it does not work past the caller's deadline."""


def deadline_header(request: UpstreamRequest, grpc: bool, per_try: float | None) -> None:
    """Tell the next hop how long it has: the nearer of the enclosing deadline (the
    request timeout, cancel scopes of layers) and the per-try timeout. Called only when
    the exchange has a timeout (asking anyio for the deadline costs a few microseconds)."""
    left = anyio.current_effective_deadline() - anyio.current_time()
    if per_try and per_try < left:
        left = per_try
    if left == math.inf:
        return
    ms = max(int(left * 1000), 1)
    headers = request.head.headers
    if grpc:
        current = _grpc_timeout_ms(headers.get("grpc-timeout"))
        if current is None or ms < current:
            headers.set("grpc-timeout", f"{ms}m")
    else:
        headers.set(DEADLINE_HEADER, str(ms))


_DEADLINE_RAW: Final = DEADLINE_HEADER.encode()


def caller_deadline(headers: Headers) -> float | None:
    """Seconds left according to the previous hop's ``x-plait-timeout-ms``, if it sent one."""
    raw = headers.get_raw(_DEADLINE_RAW)
    if raw is None or not raw.isdigit():
        return None
    return max(int(raw), 1) / 1000


_GRPC_UNITS: Final = {"H": 3_600_000.0, "M": 60_000.0, "S": 1000.0, "m": 1.0, "u": 1e-3, "n": 1e-6}


def _grpc_timeout_ms(value: str | None) -> float | None:
    """``grpc-timeout`` (gRPC over HTTP/2: 1-8 digits and a unit) in milliseconds."""
    if not value or value[-1] not in _GRPC_UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _GRPC_UNITS[value[-1]]


def _set_length(headers: Headers, n: int) -> None:
    value = str(n).encode()
    if headers.get_raw(b"content-length") != value:
        headers.set(b"content-length", value)


class _NoBackend(PlaitError):
    status_hint = 500
    reason = "no backend for route"
