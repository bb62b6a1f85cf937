"""One request/response exchange through the filter chain: the proxy's heart.

Theory of operation
-------------------
``handle(lrt, down, ev)`` runs one stream, whatever HTTP version either side
speaks:

1. pin the listener's current snapshot (a reload mid-stream changes nothing
   for this stream), match the route rule, start the rule's chain;
2. request phase in order; a ``LocalReply`` answers from the proxy, a
   ``Buffer`` makes the request body be collected whole first;
3. the upstream call: ``around_upstream`` layers, first filter outermost,
   around :meth:`_Exchange.terminal`, which picks an endpoint of
   ``ctx.cluster`` (set by the split filter), takes a pooled stream and sends;
4. response phase in reverse order, then the response goes to the client.

Fast path: when the whole request arrived with its head and the whole response
with its head, nothing is streamed: no extra task, one write each way.
Streaming path: a request-body pump runs in a task group owned by this
exchange, cancelled when the exchange ends.

Invariants: ``on_stream_complete`` runs exactly once (``finally``); every
upstream stream taken is finished or reset before ``handle`` returns; a
mesh-generated error answers ``status_hint`` with ``x-plait-reason`` while no
response head went out, and resets the stream after.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from plait.sdk import (
    BodyTooLarge,
    BufferedBody,
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

from ._bodies import BodyStage, LocalReplyRaised, RequestBody, UpstreamBody
from ._streams import Downstream, UpstreamStream
from .chain import ChainRun
from .codec import InformationalReceived, RequestReceived, ResponseReceived, StreamReset

if TYPE_CHECKING:
    from .runtime import ListenerRuntime
    from .upstream._manager import Pool

__all__ = ["handle", "local_reply_head"]

log = logging.getLogger(__name__)


def local_reply_head(reply: LocalReply) -> tuple[ResponseHead, bytes]:
    body = reply.body or (f"{reply.reason}\n".encode() if reply.reason else b"")
    headers = Headers.from_lowercase_pairs(
        [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    )
    for name, value in reply.headers:
        headers.add(name, value)
    if reply.reason:
        headers.set("x-plait-reason", reply.reason)
    return ResponseHead(status=reply.status, headers=headers), body


async def handle(lrt: ListenerRuntime, down: Downstream, ev: RequestReceived) -> None:
    """Proxy one stream. Never raises except on cancellation."""
    ctx = StreamContext(
        connection=down.conn_ctx,
        request=ev.head,
        stream_id=ev.stream_id,
        snapshot_version=lrt.snapshot.version,
    )
    await _Exchange(lrt, down, ctx).run(ev)


class _Exchange:
    __slots__ = ("ctx", "down", "lrt", "pending_reply", "rule_timeouts", "run_", "tg", "upstreams")

    def __init__(self, lrt: ListenerRuntime, down: Downstream, ctx: StreamContext) -> None:
        self.lrt = lrt
        self.down = down
        self.ctx = ctx
        self.upstreams: list[UpstreamStream] = []
        self.tg: anyio.abc.TaskGroup | None = None
        self.run_: ChainRun | None = None
        self.pending_reply: LocalReply | None = None
        self.rule_timeouts = lrt.config.timeouts

    async def run(self, ev: RequestReceived) -> None:
        lrt, ctx = self.lrt, self.ctx
        lrt.runtime.stream_started()
        try:
            rule = lrt.router.match(ctx.request)
            if rule is None:
                await self.local(LocalReply(404, reason="no route"))
                return
            ctx.route_name = rule.name
            self.rule_timeouts = rule.timeouts
            self.run_ = lrt.chain_for(rule).start(ctx)
            timeout = rule.timeouts.request or lrt.config.timeouts.request
            if self.run_.chain.fast and ev.end_stream and not ev.upgrade and not timeout:
                await self.fast(ev, self.run_)
                return
            try:
                with anyio.fail_after(timeout) if timeout else _NULL_SCOPE:
                    if ev.end_stream:
                        await self.proxy(ev)
                    else:
                        async with anyio.create_task_group() as tg:
                            self.tg = tg
                            await self.proxy(ev)
                            tg.cancel_scope.cancel()
            except TimeoutError:
                await self.local(LocalReply(504, reason="request timeout"))
        except Exception as exc:
            self.failed(exc)
        finally:
            self.finish()

    def failed(self, exc: Exception) -> None:
        """Answer an exception from any step the way :meth:`run` does (a plain call)."""
        if isinstance(exc, LocalReplyRaised):
            self.local_now(exc.reply)
        elif isinstance(exc, PlaitError):
            log.debug("stream %s: %s: %s", self.ctx.stream_id, exc.reason, exc)
            self.local_now(self.pending_reply or LocalReply(exc.status_hint, reason=exc.reason))
        else:
            log.exception("stream %s failed: %r", self.ctx.stream_id, exc)
            self.local_now(LocalReply(500, reason="internal error"))

    def finish(self) -> None:
        """The end-of-stream bookkeeping, exactly once per stream (callers own that)."""
        lrt, ctx = self.lrt, self.ctx
        for up in self.upstreams:
            up.reset()
        if self.run_ is not None:
            self.run_.complete()
        lrt.record(ctx, time.monotonic() - ctx.started_at)
        lrt.runtime.stream_ended()

    async def local(self, reply: LocalReply) -> None:
        self.local_now(reply)

    def local_now(self, reply: LocalReply) -> None:
        ctx, down = self.ctx, self.down
        if reply.reason and ctx.failure_reason is None:
            ctx.failure_reason = reply.reason
        if down.response_started:
            down.reset()
            return
        head, body = local_reply_head(reply)
        ctx.response = head
        down.send_response(head, end_stream=True, body=body)

    # -- the fast path ---------------------------------------------------------------------

    async def fast(self, ev: RequestReceived, run: ChainRun) -> None:
        """A whole request through a chain of plain hooks (``chain.fast``).

        The same steps as :meth:`proxy` + :meth:`terminal` + :meth:`respond`, with no
        coroutine per phase and no body objects; a response that does not arrive whole
        with its head continues on the streaming path. The steps are plain methods
        shared with the callback path (:mod:`plait.core._inline`).
        """
        sending = self.fast_request(ev, run)
        if sending is None:
            return
        pool, request = sending
        if self.rule_timeouts.backend_request:
            response = await self.terminal(self.ctx, request)
        else:
            stream = pool.take()
            if stream is None:
                response = await self._attempt(pool, request)
            else:
                response = await self._send(pool, stream, request)
        await self.fast_respond(run, response)

    def fast_request(
        self, ev: RequestReceived, run: ChainRun
    ) -> tuple[Pool, UpstreamRequest] | None:
        """Request hooks and endpoint pick, as plain calls; ``None`` once answered locally."""
        ctx = self.ctx
        out = run.headers_now(False, ctx.request.headers, not ev.body)
        if out.reply is not None:
            self.local_now(out.reply)
            return None
        body = ev.body
        if body and run.chain.request_data:
            out = run.body_now(False, body)
            if out.reply is not None:
                self.local_now(out.reply)
                return None
            body = out.data
        if ctx.cluster is None:
            raise _NoBackend(f"route {ctx.route_name} has no backend")
        crt = self.lrt.snapshot.clusters.get(ctx.cluster)
        if crt is None:
            raise NoHealthyUpstream(f"unknown backend {ctx.cluster}")
        pool = crt.pick()
        ctx.upstream_address = pool.key
        return pool, UpstreamRequest(head=ctx.request, body=BufferedBody(body))

    async def fast_respond(self, run: ChainRun, response: UpstreamResponse) -> None:
        if not self.respond_now(run, response):
            await self.respond(run, response)

    def respond_now(self, run: ChainRun, response: UpstreamResponse) -> bool:
        """Response hooks and the write for a whole response (``chain.fast``); ``False``
        (nothing done) when the response streams and needs :meth:`respond`."""
        head = response.head
        self.ctx.response = head
        whole = response.body.whole
        if whole is None or response.body.trailers is not None:
            return False
        out = run.headers_now(True, head.headers, not whole)
        if out.reply is not None:
            self.local_now(out.reply)
            return True
        if run.chain.response_data:
            out = run.body_now(True, whole)
            if out.reply is not None:
                self.local_now(out.reply)
                return True
            if out.data is not whole:
                _set_length(head.headers, len(out.data))
            whole = out.data
        self.down.send_response(head, end_stream=True, body=whole)
        return True

    # -- the proxy path --------------------------------------------------------------------

    async def proxy(self, ev: RequestReceived) -> None:
        run = self.run_
        assert run is not None
        ctx, _down = self.ctx, self.down
        out = await run.request_headers(ctx.request.headers, ev.end_stream)
        if out.reply is not None:
            await self.local(out.reply)
            return
        if ev.upgrade:
            await self.tunnel(ev)
            return
        body = await self.request_body(ev, run, out.buffer_limit)
        if body is None:
            return
        request = UpstreamRequest(head=ctx.request, body=body)
        call = run.compose(self.terminal) if run.chain.layers else self.terminal
        response = await call(ctx, request)
        ctx.response = response.head
        await self.respond(run, response)

    async def request_body(
        self, ev: RequestReceived, run: ChainRun, buffer_limit: int
    ) -> MessageBody | None:
        if ev.end_stream:
            data = ev.body
            if data and run.chain.request_data:
                out = await run.request_data(data, True)
                if out.reply is not None:
                    await self.local(out.reply)
                    return None
                data = out.data
            return BufferedBody(data)
        if ev.expect_continue:
            self.down.send_informational(ResponseHead(status=100))
        body = RequestBody(self.down, BodyStage(run.request_data, run.request_trailers))
        if buffer_limit:
            try:
                whole = await body.read_all(buffer_limit)
            except BodyTooLarge:
                await self.local(LocalReply(413, reason="request body too large"))
                return None
            return BufferedBody(whole, body.trailers)
        if body.reply is not None:
            await self.local(body.reply)
            return None
        return body

    async def terminal(self, ctx: StreamContext, request: UpstreamRequest) -> UpstreamResponse:
        """The innermost upstream call: pick an endpoint, send, await the response head."""
        if ctx.cluster is None:  # Gateway API: a rule without backends answers 500
            raise _NoBackend(f"route {ctx.route_name} has no backend")
        crt = self.lrt.snapshot.clusters.get(ctx.cluster)
        if crt is None:
            raise NoHealthyUpstream(f"unknown backend {ctx.cluster}")
        pool = crt.pick()
        ctx.upstream_address = pool.key
        per_try = self.rule_timeouts.backend_request
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
        return await self._send(pool, await pool.open_stream(), request)

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
            return UpstreamResponse(head=ev.head, body=UpstreamBody(self, stream, ev))
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
        except PlaitError as exc:
            log.debug("stream %s: request body: %s", self.ctx.stream_id, exc)
            stream.reset()

    async def respond(self, run: ChainRun, response: UpstreamResponse) -> None:
        down, head = self.down, response.head
        body = response.body
        whole = body.whole
        end = whole is not None and body.trailers is None
        out = await run.response_headers(head.headers, end and not whole)
        if out.reply is not None:
            await self.local(out.reply)
            return
        if whole is None and out.buffer_limit:
            try:
                whole = await body.read_all(out.buffer_limit)
            except BodyTooLarge:
                await self.local(LocalReply(500, reason="response body too large for a filter"))
                return
        if whole is not None and body.trailers is None:
            data = whole
            if run.chain.response_data:
                res = await run.response_data(whole, True)
                if res.reply is not None:
                    await self.local(res.reply)
                    return
                data = res.data
            if data is not whole or whole:
                _set_length(head.headers, len(data))
            down.send_response(head, end_stream=True, body=data)
            return
        await self.stream_response(run, body, head)

    async def stream_response(self, run: ChainRun, body: MessageBody, head: ResponseHead) -> None:
        down = self.down
        if run.chain.response_data:
            head.headers.remove("content-length")  # filters may change the length
        down.send_response(head, end_stream=False)
        stage = BodyStage(run.response_data, run.response_trailers)
        while True:
            chunk = await body.read()
            if not chunk:
                break
            out = await stage.push(chunk, False)
            if out.reply is not None:
                down.reset()
                return
            if out.data:
                await down.send_data(out.data, end_stream=False)
        if body.trailers is not None:
            out = await stage.trailers(body.trailers)
            if out.reply is not None:
                down.reset()
                return
            down.send_trailers(body.trailers)
            return
        out = await stage.push(b"", True)
        if out.reply is not None:
            down.reset()
            return
        await down.send_data(out.data, end_stream=True)

    # -- upgrades (WebSocket) --------------------------------------------------------------

    async def tunnel(self, ev: RequestReceived) -> None:
        from ._tunnel import run_upgrade

        await run_upgrade(self, ev)


def _set_length(headers: Headers, n: int) -> None:
    value = str(n).encode()
    if headers.get_raw(b"content-length") != value:
        headers.set(b"content-length", value)


class _NoBackend(PlaitError):
    status_hint = 500
    reason = "no backend for route"


class _NullScope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_SCOPE = _NullScope()
