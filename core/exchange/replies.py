"""Local replies through the response hooks of the filters that saw the request.

A local reply -- a filter's ``LocalReply``, or a mesh-generated error (no route
endpoint, a connect failure, a timeout, a body too large) -- is a response like any
other to the filters that already saw the request. As in Envoy, it passes through
their response hooks in reverse order (``on_response_headers``, then
``on_response_data`` with the whole body), so a filter that stamps every response (a
request id, CORS, security headers, a Proxy-Wasm module) stamps local replies too.

The filters that saw the request are those whose request-head hook passed it on: for
a reply given in the request-head phase, the filters before the one that answered
(``through`` is its index); for a reply after that phase (a request body hook, the
upstream try, the request timeout), every filter (:data:`ALL`), the one that answered
included. A filter placed after one that answered the request head never saw the
request and sees nothing of the reply; the one that answered it built the reply.

The reply is converted before the hooks see it (a gRPC caller's error becomes a
trailers-only response: ``errors.py``), so they see what the client will. A hook that
answers in turn, or fails closed, replaces the reply, which is then sent as it is.
A reply after the response head went out resets the stream instead. A reply given by
a *response* hook is sent as it is (``Exchange.local_now``): the filters between it
and the client have not seen a response head yet, and the one they would see is not
the upstream's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from plait.sdk import LocalReply

from .actions import Steps
from .errors import local_reply_head
from .phase import Suspended, settled
from .upstream import set_length

if TYPE_CHECKING:
    from .machine import Exchange

__all__ = ["ALL", "answer"]

ALL: Final = 1 << 30
"""``through`` for a reply after the request-head phase: every filter saw the request."""


def answer(ex: Exchange, reply: LocalReply, through: int) -> Steps:
    """Send ``reply`` through the response hooks of the filters with index < ``through``."""
    prepared = ex.prepare(reply)
    if prepared is None:
        return  # the response had started: the stream was reset
    run, ctx = ex.run, ex.ctx
    head, body = local_reply_head(prepared)
    ctx.response = head
    if run is not None and through > 0:
        chain = run.chain
        hooks = tuple(h for h in chain.response_headers if h.index < through)
        if hooks:
            out = run.heads(hooks, head.headers, not body)
            if isinstance(out, Suspended):
                out = yield from settled(out)
            if out.reply is not None:
                ex.local_now(out.reply)
                return
        data_hooks = tuple(h for h in chain.response_data if h.index < through) if body else ()
        if data_hooks:
            out = run.data(data_hooks, body, True)
            if isinstance(out, Suspended):
                out = yield from settled(out)
            if out.reply is not None:
                ex.local_now(out.reply)
                return
            if out.data is not body:
                body = out.data
                set_length(head.headers, len(body))
    ex.bytes_out = len(body)
    ex.down.send_response(head, end_stream=True, body=body)
