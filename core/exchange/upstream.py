"""One upstream try, as part of the exchange machine: pick, send, wait for the head.

:func:`attempt` is the terminal of the layers' walk (``tries.py``): it takes a
pooled stream of the endpoint the layers chose (or the cluster's next pick),
sends the request and yields :class:`~.actions.WaitHead` for the response head.
With a per-try timeout (``backendRequest``) every wait of the try carries its
deadline, and a ``TimeoutError`` becomes :class:`~plait.sdk.UpstreamTimeout`.
A reused keep-alive connection that the upstream closed just before our request
is retried once on a fresh connection (nothing was received, the body is in memory).

Invariant: every upstream stream taken is in ``Exchange.upstreams`` until it is
finished (returned to its pool) or reset; ``Exchange.finish`` resets what is left.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from plait.sdk import (
    DownstreamProtocolError,
    Headers,
    LocalReply,
    MessageBody,
    PlaitError,
    UpstreamRequest,
    UpstreamReset,
    UpstreamResponse,
    UpstreamTimeout,
)

from ..codec import ResponseReceived, StreamReset
from ..upstream.stream import UpstreamStream
from .actions import Steps, WaitHead, Within
from .bodies import ClientLeft, LocalReplyRaised, UpstreamBody

if TYPE_CHECKING:
    from ..upstream._manager import ClusterRuntime
    from .machine import Exchange

__all__ = ["DEADLINE_HEADER", "attempt", "caller_deadline", "received", "set_length"]

_monotonic: Final = time.monotonic
log = logging.getLogger(__name__)


def attempt(ex: Exchange, request: UpstreamRequest) -> Steps:
    """One try: its response head and body (or raise an ``UpstreamError``)."""
    ex.attempts += 1  # every try, one that fails to connect too (not the stale keep-alive redo)
    crt = ex.chosen_cluster()
    pool = crt.pick_for(request.endpoint, request.exclude)
    if crt.tunnels and not request.head.authority:
        pool = crt.tunnels.get(pool.key, pool)  # HTTP/2 needs an authority: stay HTTP/1.1
    ex.ctx.upstream_address = pool.key
    per_try = ex.rule_timeouts.backend_request
    deadline = _monotonic() + per_try if per_try else None
    if deadline is not None or ex.deadline is not None:
        deadline_header(request, crt.cluster.protocol.value == "grpc", deadline, ex.deadline)
    try:
        stream = pool.take()  # a warm connection costs no wait
        if stream is None:
            opening = pool.open_stream()
            stream = yield (opening if deadline is None else Within(opening, deadline))
        fresh = False
        while True:
            if not write_now(ex, stream, request):
                yield from _write_streamed(ex, stream, request)
            ev = yield WaitHead(stream, deadline)
            response = received(ex, stream, ev, crt)
            if response is not None:
                return response
            if fresh or not stream.reused or request.body.whole is None:
                break
            if type(ev) is not StreamReset:
                break
            fresh = True
            opening = pool.open_stream(fresh=True)
            stream = yield (opening if deadline is None else Within(opening, deadline))
    except TimeoutError:
        raise UpstreamTimeout(f"no response from {pool.endpoint.key} in {per_try}s") from None
    raise UpstreamReset("upstream closed the connection before responding")


def write_now(ex: Exchange, stream: UpstreamStream, request: UpstreamRequest) -> bool:
    """Send a whole request without trailers; ``False`` (nothing sent) otherwise."""
    body = request.body
    whole = body.whole
    if whole is None or body.trailers is not None:
        return False
    ex.upstreams.append(stream)
    if whole:
        set_length(request.head.headers, len(whole))
    stream.send_head(request.head, end_stream=True, body=whole)
    return True


def _write_streamed(ex: Exchange, stream: UpstreamStream, request: UpstreamRequest) -> Steps:
    ex.upstreams.append(stream)
    body = request.body
    whole, trailers = body.whole, body.trailers
    if whole is not None and trailers is not None:
        request.head.headers.remove("content-length")
        stream.send_head(request.head, end_stream=False)
        yield stream.send_data(whole, end_stream=False)
        stream.send_trailers(trailers)
        return
    stream.send_head(request.head, end_stream=False)
    assert ex.tg is not None  # the driver opens one for a streamed request
    ex.tg.start_soon(pump_request, ex, body, stream)


def received(
    ex: Exchange, stream: UpstreamStream, ev: object, crt: ClusterRuntime
) -> UpstreamResponse | None:
    """The response for the first final event on ``stream``; ``None`` (the stream is
    reset and dropped) when the upstream did not answer."""
    if type(ev) is ResponseReceived:
        if ev.end_stream:
            stream.finish(True)
            ex.upstreams.remove(stream)
        body = UpstreamBody(ex, stream, ev)
        if not ev.end_stream:
            body.idle_timeout = crt.cluster.timeouts.stream_idle
        return UpstreamResponse(head=ev.head, body=body)
    stream.reset()
    ex.upstreams.remove(stream)
    return None


async def pump_request(ex: Exchange, body: MessageBody, stream: UpstreamStream) -> None:
    """Stream the request body upstream (a task of the exchange's task group)."""
    try:
        while chunk := await body.read():
            await stream.send_data(chunk, end_stream=False)
        if body.trailers is not None:
            stream.send_trailers(body.trailers)
        else:
            await stream.send_data(b"", end_stream=True)
    except LocalReplyRaised as exc:
        ex.pending_reply = exc.reply
        stream.reset()
    except ClientLeft as gone:  # (one name per except type: mypyc types it once)
        log.debug("stream %s: request body: %s", ex.ctx.stream_id, gone)
        stream.reset()  # the stream's cancellation follows
    except DownstreamProtocolError as bad:
        # Broken framing or a buffer limit: the upstream request is aborted, and the
        # answer is the client's error, not the upstream reset that follows.
        log.debug("stream %s: request body: %s", ex.ctx.stream_id, bad)
        ex.pending_reply = LocalReply(bad.status_hint, reason=bad.reason)
        stream.reset()
    except PlaitError as err:
        log.debug("stream %s: request body: %s", ex.ctx.stream_id, err)
        stream.reset()


DEADLINE_HEADER: Final = "x-plait-timeout-ms"
"""The remaining time budget of a request, in milliseconds, sent to the next hop over
HTTP (gRPC upstreams get ``grpc-timeout``), so it does not work past the caller's deadline."""


def deadline_header(
    request: UpstreamRequest, grpc: bool, per_try: float | None, overall: float | None
) -> None:
    """Tell the next hop how long it has: the nearer of the try's and the request's
    deadlines (monotonic clock)."""
    nearest = min(d for d in (per_try, overall) if d is not None)
    ms = max(int((nearest - _monotonic()) * 1000), 1)
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


def set_length(headers: Headers, n: int) -> None:
    value = str(n).encode()
    if headers.get_raw(b"content-length") != value:
        headers.set(b"content-length", value)
