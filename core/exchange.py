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

Invariants: ``on_stream_complete`` and the access-log line happen exactly once
(``finally``; a cancelled stream says why in its failure reason); every
upstream stream taken is finished or reset before ``handle`` returns; a
mesh-generated error answers ``status_hint`` with ``x-plait-reason`` while no
response head went out, and resets the stream after. The answer does not
depend on where the error was raised: an ``ExceptionGroup`` from the task group
is answered by its deciding error, a client's broken request body (found by the
body pump) by 400 rather than by the upstream reset that follows, and a gRPC
caller gets it as a trailers-only response (``core/_errors.py``). ``CONNECT`` is
answered 501: plait tunnels only HTTP/1.1 ``Upgrade`` (``core/_tunnel.py``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import (
    BodyTooLarge,
    BufferedBody,
    LocalReply,
    MessageBody,
    ResponseHead,
    StreamContext,
    UpstreamCluster,
    UpstreamRequest,
    UpstreamResponse,
)

from ._bodies import BodyStage, RequestBody
from ._exchange_base import (
    ExchangeBase,
    _set_length,
    caller_deadline,
    local_reply_head,
)
from ._layers import LayerPass
from ._streams import Downstream
from .chain import ChainRun
from .codec import RequestReceived

if TYPE_CHECKING:
    from .runtime import ListenerRuntime
    from .upstream._manager import Pool

__all__ = ["handle", "local_reply_head"]

log = logging.getLogger(__name__)


async def handle(lrt: ListenerRuntime, down: Downstream, ev: RequestReceived) -> None:
    """Proxy one stream. Never raises except on cancellation."""
    ctx = StreamContext(
        connection=down.conn_ctx,
        request=ev.head,
        stream_id=ev.stream_id,
        snapshot_version=lrt.snapshot.version,
    )
    await _Exchange(lrt, down, ctx).run(ev)


class _Exchange(ExchangeBase):
    __slots__ = ()

    async def run(self, ev: RequestReceived) -> None:
        lrt, ctx = self.lrt, self.ctx
        lrt.runtime.stream_started()
        try:
            if ctx.request.method == "CONNECT":  # no route can carry a CONNECT tunnel
                self.down.closing = True  # what follows a CONNECT is no HTTP request
                await self.local(LocalReply(501, reason="CONNECT not supported"))
                return
            rule = lrt.router.match(ctx.request)
            if rule is None:
                await self.local(LocalReply(404, reason="no route"))
                return
            ctx.route_name = rule.name
            self.rule_timeouts = rule.timeouts
            self.run_ = lrt.chain_for(rule).start(ctx)
            timeout = rule.timeouts.request or lrt.config.timeouts.request
            if (left := caller_deadline(ctx.request.headers)) is not None:
                timeout = min(timeout, left) if timeout else left  # the caller's deadline
            if self.run_.chain.plain_hooks and ev.end_stream and not ev.upgrade and not timeout:
                if self.run_.chain.layers:
                    await self.fast_layered(ev, self.run_)
                else:
                    await self.fast(ev, self.run_)
                return
            if timeout:
                self.deadline = anyio.current_time() + timeout
            try:
                with anyio.fail_after(timeout) if timeout else _NO_TIMEOUT:
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
        except BaseException:  # cancelled: the client left, or the drain's grace ran out
            self.cancelled()
            raise
        finally:
            self.finish()

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

    async def fast_layered(self, ev: RequestReceived, run: ChainRun) -> None:
        """:meth:`fast` for a chain with ``around_upstream`` layers: plain head/data hooks,
        then the layers around :meth:`terminal` (by their fast pairs when all have one)."""
        request = self.request_now(ev, run)
        if request is None:
            return
        self.ctx.upstream_cluster = self.cluster_state()
        if run.chain.pairs is not None:
            response = await LayerPass(run, request).call(self.terminal)
        else:
            response = await run.compose(self.terminal)(self.ctx, request)
        await self.fast_respond(run, response)

    def fast_request(
        self, ev: RequestReceived, run: ChainRun
    ) -> tuple[Pool, UpstreamRequest] | None:
        """Request hooks and endpoint pick, as plain calls; ``None`` once answered locally."""
        request = self.request_now(ev, run)
        if request is None:
            return None
        return self.pool_for(request), request

    def request_now(self, ev: RequestReceived, run: ChainRun) -> UpstreamRequest | None:
        """Request hooks over a whole request, as plain calls; ``None`` once answered locally."""
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
        return UpstreamRequest(head=ctx.request, body=BufferedBody(body))

    def cluster_state(self) -> UpstreamCluster | None:
        """The chosen cluster's shared state, for ``ctx.upstream_cluster``."""
        crt = self.lrt.snapshot.clusters.get(self.ctx.cluster) if self.ctx.cluster else None
        return crt.state if crt is not None else None

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
        if run.chain.layers:
            ctx.upstream_cluster = self.cluster_state()
            call = run.compose(self.terminal)
        else:
            call = self.terminal
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


_NO_TIMEOUT: Final = contextlib.nullcontext()  # reusable: one instance for every stream
