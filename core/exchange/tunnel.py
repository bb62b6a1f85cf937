"""HTTP/1.1 Upgrade (WebSocket) through the proxy.

The request head goes through the request-header hooks like any request;
then a *fresh* HTTP/1.1 upstream connection (never a pooled one: after a 101 it is
no longer HTTP; HTTP/1.1 even to a sidecar the cluster's other requests reach as
HTTP/2) carries it with ``Connection: upgrade``. If the upstream answers
101, the response head goes through the response-header hooks, the client gets
the 101, and both connections become an opaque byte relay until either side
closes. Any other answer is proxied as an ordinary response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from plait.sdk import NoHealthyUpstream, UpstreamReset

from ..codec import InformationalReceived, RequestReceived, ResponseReceived, TunnelData
from ..upstream.stream import UpstreamStream
from .bodies import UpstreamBody
from .phase import settle
from .streams import Downstream

if TYPE_CHECKING:
    from .machine import Exchange

__all__ = ["run_upgrade"]


async def run_upgrade(ex: Exchange, ev: RequestReceived) -> None:
    ctx, run = ex.ctx, ex.run
    assert run is not None
    if ctx.cluster is None or (crt := ex.lrt.snapshot.clusters.get(ctx.cluster)) is None:
        raise NoHealthyUpstream("no backend selected for the route")
    pool = crt.pick_tunnel()
    ctx.upstream_address = pool.key
    stream = await pool.open_stream(fresh=True)
    ex.upstreams.append(stream)
    stream.send_head(ctx.request, end_stream=False, upgrade=True)
    resp = await stream.read_event()
    while isinstance(resp, InformationalReceived):
        resp = await stream.read_event()
    if not isinstance(resp, ResponseReceived):
        raise UpstreamReset("upstream closed the connection before responding to the upgrade")
    ctx.response = resp.head
    out = await settle(run.heads(run.chain.response_headers, resp.head.headers, resp.end_stream))
    if out.reply is not None:
        ex.local_now(out.reply)
        return
    if resp.head.status != 101:
        await _plain_response(ex, stream, resp)
        return
    ex.down.send_response(resp.head, end_stream=False)
    if resp.body:
        ex.down.send_raw(resp.body)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_relay_up, ex.down, stream, tg.cancel_scope)
        tg.start_soon(_relay_down, stream, ex.down, tg.cancel_scope)
    stream.finish(False)
    ex.down.closing = True


async def _relay_up(down: Downstream, stream: UpstreamStream, scope: anyio.CancelScope) -> None:
    while isinstance(ev := await down.read_event(), TunnelData):
        if not ev.data:
            break
        stream.send_raw(ev.data)
    scope.cancel()


async def _relay_down(stream: UpstreamStream, down: Downstream, scope: anyio.CancelScope) -> None:
    while isinstance(ev := await stream.read_event(), TunnelData):
        if not ev.data:
            break
        down.send_raw(ev.data)
    scope.cancel()


async def _plain_response(ex: Exchange, stream: UpstreamStream, resp: ResponseReceived) -> None:
    body = UpstreamBody(ex, stream, resp)
    data = await body.read_all()
    if resp.end_stream:
        stream.finish(True)
    ex.down.closing = True
    head = resp.head
    head.headers.set("content-length", str(len(data)))
    ex.down.send_response(head, end_stream=True, body=data)
