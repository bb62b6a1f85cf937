"""One request/response exchange, whatever HTTP version either side speaks: the machine.

Theory of operation
-------------------
An :class:`Exchange` is one stream's life. :meth:`Exchange.begin` (plain calls)
pins the listener's current snapshot (a reload mid-stream changes nothing for
this stream), matches the route rule and starts the rule's chain.
:meth:`Exchange.steps` is the rest, as a generator that never waits: it yields
every wait as an action (``actions.py``) and the driver (``driver.py``) sends
back the result:

1. request phase in list order: a ``LocalReply`` answers from the proxy, a
   ``Buffer`` makes the request body be collected whole first;
2. the upstream tries: the layers' policies around :func:`~.upstream.attempt`
   (``tries.py``), which picks an endpoint of ``ctx.cluster`` (set by the
   split filter), takes a pooled stream, sends and waits for the head;
3. response phase in reverse order, then the response goes to the client:
   whole in one write when it arrived whole, else streamed chunk by chunk.

A whole request, sync hooks, sync layer policies and a warm upstream connection
need only :class:`~.actions.WaitHead`, which the callback driver serves from
protocol callbacks: no task at all. Any other action moves the same machine
into a task. There is no second implementation of any step.

Invariants: ``on_stream_complete`` and the access-log line happen exactly once
(:meth:`Exchange.finish`, called by the driver; a cancelled stream says why in
its failure reason); every upstream stream taken is finished or reset by then; a
mesh-generated error answers ``status_hint`` with ``x-plait-reason`` while no
response head went out, and resets the stream after, whatever step raised it
(``errors.py``: an exception group is answered by its deciding error, a gRPC
caller gets a trailers-only response). ``CONNECT`` is answered 501: plait
tunnels only HTTP/1.1 ``Upgrade`` (``tunnel.py``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Final

from plait.sdk import (
    BodyTooLarge,
    BufferedBody,
    LocalReply,
    MessageBody,
    NoHealthyUpstream,
    PlaitError,
    ResponseHead,
    StreamContext,
    UpstreamCluster,
    UpstreamRequest,
)

from ..codec import RequestReceived
from ..trace_context import decide_trace
from ..upstream.stream import UpstreamStream
from .actions import DONE, Steps, drive
from .bodies import BodyStage, LocalReplyRaised, RequestBody
from .chain import ChainRun, Hook
from .errors import grpc_reply, is_grpc, local_reply_head, primary
from .phase import PASS, Suspended, settled
from .replies import ALL, answer
from .streams import Downstream
from .tries import tries
from .tunnel import run_upgrade
from .upstream import attempt, caller_deadline, set_length

if TYPE_CHECKING:
    import anyio.abc

    from ..runtime import ListenerRuntime
    from ..upstream._manager import ClusterRuntime

__all__ = ["Exchange"]

_monotonic: Final = time.monotonic
log = logging.getLogger(__name__)


class Exchange:
    """One stream: what it knows, and the machine (:meth:`steps`) that proxies it."""

    __slots__ = (
        "_ended",
        "attempts",
        "bytes_in",
        "bytes_out",
        "ctx",
        "deadline",
        "down",
        "ev",
        "grpc_status",
        "lrt",
        "pending_reply",
        "request_body",
        "rule_timeouts",
        "run",
        "span",
        "tg",
        "trace_id",
        "upstreams",
    )

    def __init__(self, lrt: ListenerRuntime, down: Downstream, ev: RequestReceived) -> None:
        self.lrt = lrt
        self.down = down
        self.ev = ev
        self.ctx = StreamContext(
            connection=down.conn_ctx,
            request=ev.head,
            stream_id=ev.stream_id,
            snapshot_version=lrt.snapshot.version,
        )
        self.upstreams: list[UpstreamStream] = []
        self.tg: anyio.abc.TaskGroup | None = None
        """The driver's task group for a streamed request's body pump."""
        self.run: ChainRun | None = None
        self.pending_reply: LocalReply | None = None
        self.rule_timeouts = lrt.timeouts
        self.deadline: float | None = None
        """When the request's timeout ends (monotonic clock), if it has one."""
        self._ended = False
        self.attempts = 0
        """Upstream tries made (a retried request counts each, one that could not connect
        too; the redo of a request a stale keep-alive connection dropped does not)."""
        self.bytes_in = len(ev.body)
        """Request body bytes received from the client (a streamed body adds its chunks
        as :class:`~.bodies.RequestBody` reads them: :meth:`received`)."""
        self.bytes_out = 0
        """Response body bytes sent to the client."""
        self.request_body: RequestBody | None = None
        self.span: object = None
        """The tracer's span of a sampled stream (``runtime.ListenerRuntime.trace_end``)."""
        self.trace_id: bytes | None = None
        """The trace id the sampling decision gave the request, when it fixed one (the
        access log's; ``None``: read it from the request)."""
        self.grpc_status: str | None = None
        """The ``grpc-status`` of the response trailers (the metrics' gRPC status)."""
        lrt.runtime.stream_started()

    # -- the machine -----------------------------------------------------------------------

    def begin(self) -> bool:
        """Route the request and start its chain; ``False`` once answered locally."""
        lrt, ctx = self.lrt, self.ctx
        try:
            tracing = lrt.tracing
            if tracing is not None:  # before any filter sees the request head
                decision, self.trace_id = decide_trace(ctx.request.headers, lrt.trace_ratio)
                if decision is not False:
                    parent = None if decision is True else decision
                    self.span = tracing.span(ctx, lrt.inbound, lrt.name, parent)
            if ctx.request.method == "CONNECT":  # no route can carry a CONNECT tunnel
                self.down.closing = True  # what follows a CONNECT is no HTTP request
                self.local_now(LocalReply(501, reason="CONNECT not supported"))
                return False
            rule = lrt.router.match(ctx.request)
            if rule is None:
                self.local_now(LocalReply(404, reason="no route"))
                return False
            chain, ctx.route_name, self.rule_timeouts, timeout = lrt.route_for(rule)
            self.run = chain.start(ctx)
            if (left := caller_deadline(ctx.request.headers)) is not None:
                timeout = min(timeout, left) if timeout else left  # the caller's deadline
            if timeout:
                self.deadline = _monotonic() + timeout
            return True
        except Exception as exc:
            self.failed(exc)
            return False

    def steps(self) -> Steps:
        """The rest of the stream's life after :meth:`begin`. Its last action is ``DONE``
        (or it returns, after a local reply); it never raises but to be closed."""
        try:
            run, ctx, ev = self.run, self.ctx, self.ev
            assert run is not None
            chain = run.chain
            hooks = chain.request_headers
            out = run.heads(hooks, ctx.request.headers, ev.end_stream) if hooks else PASS
            if isinstance(out, Suspended):
                out = yield from settled(out)
            if out.reply is not None:
                yield from answer(self, out.reply, out.by)
                return
            if ev.upgrade:
                yield run_upgrade(self, ev)
                return
            body: MessageBody | None
            if ev.end_stream:
                data = ev.body
                if data and chain.request_data:
                    data = yield from self._whole_body(run, chain.request_data, data)
                    if data is None:
                        return
                body = BufferedBody(data)
            else:
                body = yield from self._streamed_body(run, out.buffer_limit)
                if body is None:
                    return
            request = UpstreamRequest(head=ctx.request, body=body)
            if chain.layers:
                ctx.upstream_cluster = self.cluster_state()
                deadline = self.deadline if self.deadline is not None else math.inf
                response = yield from tries(run, request, self.attempt, drive, deadline)
            else:
                response = yield from attempt(self, request)
            # the response phase, then the response to the client (whole, or streamed)
            down, head, rbody = self.down, response.head, response.body
            ctx.response = head
            whole = rbody.whole
            end = whole is not None and rbody.trailers is None
            hooks = chain.response_headers
            out = run.heads(hooks, head.headers, end and not whole) if hooks else PASS
            if isinstance(out, Suspended):
                out = yield from settled(out)
            if out.reply is not None:
                self.local_now(out.reply)
                return
            if whole is None and out.buffer_limit:
                try:
                    whole = yield rbody.read_all(out.buffer_limit)
                except BodyTooLarge:
                    self.local_now(LocalReply(500, reason="response body too large for a filter"))
                    return
            trailers = rbody.trailers
            if whole is None or (
                trailers is not None and (chain.response_data or chain.response_trailers)
            ):
                yield from self._stream_response(run, rbody, head)
                return
            if trailers is not None:  # whole, with trailers (gRPC) and no hook to run on them
                self.bytes_out = len(whole)
                self.grpc_status = trailers.get("grpc-status")
                down.send_response(head, end_stream=False, body=whole)
                down.send_trailers(trailers)
            else:
                data = whole
                if chain.response_data:
                    hooks = chain.response_data
                    rewritten: bytes | None = yield from self._whole_body(run, hooks, whole)
                    if rewritten is None:
                        return
                    data = rewritten
                if data is not whole:  # a filter rewrote it (else the codec frames it as it came)
                    set_length(head.headers, len(data))
                self.bytes_out = len(data)
                down.send_response(head, end_stream=True, body=data)
        except Exception as exc:
            error = exc
        else:
            yield DONE
            return
        yield from answer(self, self.reply_for(error), ALL)

    def _whole_body(self, run: ChainRun, hooks: tuple[Hook, ...], data: bytes) -> Steps:
        """A whole body through one direction's data hooks: what to send on, or ``None``
        once a hook answered locally."""
        out = run.data(hooks, data, True)
        if isinstance(out, Suspended):
            out = yield from settled(out)
        if out.reply is not None:
            if hooks[0].response:
                self.local_now(out.reply)
            else:
                yield from answer(self, out.reply, ALL)
            return None
        return out.data

    def attempt(self, request: UpstreamRequest) -> Steps:
        """The layers' terminal: one try (``upstream.py``)."""
        return attempt(self, request)

    def _streamed_body(self, run: ChainRun, buffer_limit: int) -> Steps:
        """The request body as it streams in (``None``: answered locally)."""
        if self.ev.expect_continue:
            self.down.send_informational(ResponseHead(status=100))
        chain = run.chain
        stage = BodyStage(run, chain.request_data, chain.request_trailers)
        body = RequestBody(self.down, stage, self.lrt.timeouts.idle)
        self.request_body = body
        if not buffer_limit:
            if chain.request_data:  # the head goes up before the hooks saw (and sized) the body
                self.ctx.request.headers.remove("content-length")
            return body
        try:
            whole = yield body.read_all(buffer_limit)
        except BodyTooLarge:
            yield from answer(self, LocalReply(413, reason="request body too large"), ALL)
            return None
        return BufferedBody(whole, body.trailers)

    def _stream_response(self, run: ChainRun, body: MessageBody, head: ResponseHead) -> Steps:
        chain, down = run.chain, self.down
        if chain.response_data:
            head.headers.remove("content-length")  # filters may change the length
        down.send_response(head, end_stream=False)
        stage = BodyStage(run, chain.response_data, chain.response_trailers)
        while chunk := (yield body.read()):
            out = yield stage.push(chunk, False)
            if out.reply is not None:
                down.reset()
                return
            if out.data:
                self.bytes_out += len(out.data)
                yield down.send_data(out.data, end_stream=False)
        if body.trailers is not None:
            out = yield stage.trailers(body.trailers)
            if out.reply is not None:
                down.reset()
                return
            self.grpc_status = body.trailers.get("grpc-status")
            down.send_trailers(body.trailers)
            return
        out = yield stage.push(b"", True)
        if out.reply is not None:
            down.reset()
            return
        self.bytes_out += len(out.data)
        yield down.send_data(out.data, end_stream=True)

    # -- answers and bookkeeping -----------------------------------------------------------

    def failed(self, exc: Exception) -> None:
        """Answer an exception from a step outside the chain's phases (no hooks)."""
        self.local_now(self.reply_for(exc))

    def reply_for(self, exc: Exception) -> LocalReply:
        """The answer to an exception from any step (an exception group by its deciding
        error)."""
        err = primary(exc)
        if isinstance(err, LocalReplyRaised):
            return err.reply
        if isinstance(err, PlaitError):
            log.debug("stream %s: %s: %s", self.ctx.stream_id, err.reason, err)
            return self.pending_reply or LocalReply(err.status_hint, reason=err.reason)
        log.error("stream %s failed: %r", self.ctx.stream_id, err, exc_info=err)
        return LocalReply(500, reason="internal error")

    def prepare(self, reply: LocalReply) -> LocalReply | None:
        """``reply`` as the client gets it (gRPC's form for a gRPC caller), its reason
        recorded; ``None`` when the response had started, and the stream was reset."""
        ctx, down = self.ctx, self.down
        if is_grpc(ctx.request):
            reply = grpc_reply(reply)
        if reply.reason and ctx.failure_reason is None:
            ctx.failure_reason = reply.reason
        if down.response_started:
            down.reset()
            return None
        return reply

    def local_now(self, reply: LocalReply) -> None:
        """Send ``reply`` as it is, through no hook (``replies.py`` for the other way)."""
        prepared = self.prepare(reply)
        if prepared is None:
            return
        head, body = local_reply_head(prepared)
        self.ctx.response = head
        self.bytes_out = len(body)
        self.down.send_response(head, end_stream=True, body=body)

    def cancelled(self) -> None:
        """The stream is cancelled before it ended: the client left, or the drain's
        grace ran out. Its access-log line says which (``finish`` still runs)."""
        ctx = self.ctx
        if ctx.failure_reason is None:
            ctx.failure_reason = (
                "drain grace over" if self.lrt.runtime.draining else "client closed"
            )

    def finish(self) -> None:
        """The end-of-stream bookkeeping; exactly once, whoever calls it."""
        if self._ended:
            return
        self._ended = True
        lrt, ctx = self.lrt, self.ctx
        for up in self.upstreams:
            up.reset()
        if self.run is not None:
            self.run.complete()
        lrt.record(ctx, _monotonic() - ctx.started_at, self)
        if self.span is not None:
            lrt.trace_end(self.span, ctx, self.attempts)
        lrt.runtime.stream_ended()

    def received(self) -> int:
        """Request body bytes received from the client so far."""
        body = self.request_body
        return self.bytes_in + (body.received if body is not None else 0)

    def chosen_cluster(self) -> ClusterRuntime:
        """The cluster the request hooks chose (``ctx.cluster``); raises when there is none."""
        ctx = self.ctx
        if ctx.cluster is None:  # Gateway API: a rule without backends answers 500
            raise _NoBackend(f"route {ctx.route_name} has no backend")
        crt = self.lrt.snapshot.clusters.get(ctx.cluster)
        if crt is None:
            raise NoHealthyUpstream(f"unknown backend {ctx.cluster}")
        return crt

    def cluster_state(self) -> UpstreamCluster | None:
        """The chosen cluster's shared state, for ``ctx.upstream_cluster``."""
        crt = self.lrt.snapshot.clusters.get(self.ctx.cluster) if self.ctx.cluster else None
        return crt.state if crt is not None else None


class _NoBackend(PlaitError):
    status_hint = 500
    reason = "no backend for route"
