"""A small HTTP/1.1 + JSON server on h11 and anyio, for the resource API.

Theory of operation: one task per connection (owned by the listener's task
group) drives an ``h11.Connection``: read a request head, hand a
:class:`Request` to the application, send its :class:`Response`, and start
the next cycle (keep-alive). The application reads the body only when it needs
it (after the token is checked) through :meth:`Request.body`, which enforces
the size limit: a declared ``Content-Length`` over the limit is refused with
413 before a byte of it is read, and a chunked body is cut off as soon as it
passes the limit.

A :class:`Streaming` body is sent chunked as its ``run`` produces it (``plait stat``
and ``plait tap`` follow their progress line by line); ``run`` is cancelled when the
client closes the connection, and the connection closes after it.

Errors are values: the application raises :class:`HttpError` and the client
gets ``{"error": ..., "details": [...]}`` with that status. A request h11
cannot parse gets a 400 in the same shape; an unexpected exception a 500
(logged with its traceback).

Before a response goes out, whatever of the request h11 already holds is
consumed without touching the socket: a request without a body (no framing
headers, ``Content-Length: 0``, or an empty chunked body already received) ends
there, so the application need not read a body it does not expect and the
connection stays open for the next request. When a response goes out before
the request body was read to its end (an early 401 or 413, or a body still in
flight), the connection is closed: the unread rest cannot be told
apart from a next request. The close *lingers* (shut down our side, then read
and discard for a bounded time) so that the client, which is usually still
sending, reads the error instead of a connection reset (RFC 9112 §9.6).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import anyio.abc
import h11

__all__ = ["MAX_BODY", "HttpError", "Request", "Response", "Streaming", "serve_connection"]

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
_READ = 65536
_IDLE_TIMEOUT = 60.0
_LINGER_TIMEOUT = 2.0
_LINGER_BYTES = 64 * 1024 * 1024


class HttpError(Exception):
    """An error response: ``status``, a one-line message and optional details."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Sequence[Any] = (),
        headers: Sequence[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)
        self.headers = tuple(headers)
        self.reason = reason
        """A short machine-readable code (the CA's refusals), sent as ``reason``."""


Send = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Streaming:
    """A body sent chunked while ``run(send)`` produces it (JSON lines: ``content_type``)."""

    run: Callable[[Send], Awaitable[None]]
    content_type: str = "application/x-ndjson"


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: Any
    """JSON-compatible, sent as ``application/json``; or ``bytes``, sent as they are (the
    ``content-type`` among ``headers``); or :class:`Streaming`."""
    headers: tuple[tuple[str, str], ...] = ()


class Request:
    """One request: method, decoded path, query, lower-case headers; the body on demand."""

    def __init__(self, conn: h11.Connection, stream: anyio.abc.ByteStream, head: h11.Request):
        self._conn = conn
        self._stream = stream
        self.method = head.method.decode("ascii", "replace")
        target = urlsplit(head.target.decode("ascii", "replace"))
        self.path = unquote(target.path)
        self.query: Mapping[str, str] = dict(parse_qsl(target.query))
        self.headers: Mapping[str, str] = {
            k.decode("ascii", "replace").lower(): v.decode("latin-1") for k, v in head.headers
        }

    async def body(self, limit: int = MAX_BODY) -> bytes:
        """The whole body; :class:`HttpError` 413 past ``limit`` bytes (checked up front)."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        if self._conn.they_are_waiting_for_100_continue:  # RFC 9110 §10.1.1 (curl, > 1 MiB)
            await self._stream.send(
                self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await _next_event(self._conn, self._stream)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise HttpError(400, "the request body ended early")


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"request body too large (the limit is {limit} bytes)")


App = Callable[[Request], Awaitable[Response]]


async def serve_connection(stream: anyio.abc.ByteStream, app: App) -> None:
    """Serve requests on ``stream`` until the client or an error closes it; always closes it."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            try:
                event = await _next_event(conn, stream, idle=True)
            except HttpError as exc:
                if conn.our_state is h11.SEND_RESPONSE:
                    await _send(conn, stream, _error_response(exc))
                return
            if not isinstance(event, h11.Request):
                return  # closed, or idle too long
            response = await _respond(app, Request(conn, stream, event))
            _consume_buffered(conn)
            if isinstance(response.body, Streaming):
                await _send_streaming(conn, stream, response.status, response.body)
                return
            reusable = await _send(conn, stream, response)
            if not reusable:
                await _linger(stream)
                return
            conn.start_next_cycle()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
        pass
    except Exception:  # one broken connection must not take the API down
        log.exception("resource API: connection failed")
    finally:
        await stream.aclose()


async def _respond(app: App, request: Request) -> Response:
    try:
        return await app(request)
    except HttpError as exc:
        return _error_response(exc)
    except Exception:
        log.exception("resource API: %s %s failed", request.method, request.path)
        return Response(status=500, body={"error": "internal error (see the control plane log)",
                                          "details": []})  # fmt: skip


def _error_response(exc: HttpError) -> Response:
    body: dict[str, Any] = {"error": exc.message, "details": exc.details}
    if exc.reason is not None:
        body["reason"] = exc.reason
    return Response(status=exc.status, body=body, headers=exc.headers)


async def _next_event(
    conn: h11.Connection, stream: anyio.abc.ByteStream, idle: bool = False
) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(exc.error_status_hint, f"malformed HTTP request: {exc}") from None
        if event is not h11.NEED_DATA:
            return event
        data = b""
        with anyio.move_on_after(_IDLE_TIMEOUT):
            with contextlib.suppress(anyio.EndOfStream):
                data = await stream.receive(_READ)
        if not data and idle:
            return None
        conn.receive_data(data)


def _consume_buffered(conn: h11.Connection) -> None:
    """Read what is left of the request from h11's buffer only (never the socket)."""
    while conn.their_state is h11.SEND_BODY:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return  # the response closes the connection; the next read reports nothing
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return


async def _send(conn: h11.Connection, stream: anyio.abc.ByteStream, resp: Response) -> bool:
    """Send ``resp``; whether the connection can carry another request."""
    raw = isinstance(resp.body, bytes)  # bytes go as they are, with the app's content-type
    body = resp.body if raw else (json.dumps(resp.body, indent=2) + "\n").encode()
    reusable = conn.their_state is h11.DONE and conn.our_state is h11.SEND_RESPONSE
    kind = [] if raw else [("content-type", "application/json")]
    headers = [*kind, ("content-length", str(len(body))), *resp.headers]
    if not reusable:
        headers.append(("connection", "close"))
    out = conn.send(h11.Response(status_code=resp.status, headers=headers))
    out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send(out or b"")
    return reusable and conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def _send_streaming(
    conn: h11.Connection, stream: anyio.abc.ByteStream, status: int, body: Streaming
) -> None:
    """Send ``body`` chunked; stop it when the client closes (watched by a second task)."""
    head = [("content-type", body.content_type), ("connection", "close")]
    try:
        await stream.send(conn.send(h11.Response(status_code=status, headers=head)) or b"")
        await _stream_body(conn, stream, body)
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the client went away: a task group reports it in a group, whichever task saw it


async def _stream_body(conn: h11.Connection, stream: anyio.abc.ByteStream, body: Streaming) -> None:
    async with anyio.create_task_group() as tg:

        async def watch_close() -> None:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while await stream.receive(_READ):
                    pass  # nothing more is expected; ignored
            tg.cancel_scope.cancel()

        async def send(chunk: bytes) -> None:
            await stream.send(conn.send(h11.Data(data=chunk)) or b"")

        tg.start_soon(watch_close)
        await body.run(send)
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
        tg.cancel_scope.cancel()


async def _linger(stream: anyio.abc.ByteStream) -> None:
    """Half-close, then discard what the client still sends, within bounds.

    TLS has no half-close (``close_notify`` ends both directions): over TLS the response
    already sent is the last word, and the rest is discarded the same way.
    """
    try:
        with contextlib.suppress(NotImplementedError):  # a TLS stream
            await stream.send_eof()
        read = 0
        with anyio.move_on_after(_LINGER_TIMEOUT):
            while read < _LINGER_BYTES:
                read += len(await stream.receive(_READ))
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
