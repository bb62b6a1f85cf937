"""A small HTTP/1.1 + JSON server on anyio, for the resource API.

Theory of operation: one task per connection (owned by the listener's task
group) feeds the connection's bytes to a :class:`~._h1.RequestReader` (llhttp,
sans-I/O): take a request head, hand a :class:`Request` to the application, send
its :class:`Response`, and take the next request (keep-alive; requests pipelined
in one read are answered in order). The application reads the body only when it
needs it (after the token is checked) through :meth:`Request.body`, which
enforces the size limit: a declared ``Content-Length`` over the limit is refused
with 413 before a byte of it is read, and a chunked body is cut off as soon as it
passes the limit.

A :class:`Streaming` body is sent chunked as its ``run`` produces it (``plait stat``
and ``plait tap`` follow their progress line by line); ``run`` is cancelled when the
client closes the connection, and the connection closes after it.

Errors are values: the application raises :class:`HttpError` and the client
gets ``{"error": ..., "details": [...]}`` with that status. A request the reader
refuses gets its status (400 malformed, 431 head too large, 505 version) in the
same shape and the connection is closed; a request that stalls mid-way for
``_IDLE_TIMEOUT`` gets a 408; an unexpected exception in the application a 500
(logged with its traceback).

Before a response goes out, whatever of the request the reader already holds is
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

from ._h1 import END, Event, Failed, Head, RequestReader, response_head

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

    def __init__(self, conn: _Connection, head: Head) -> None:
        self._conn = conn
        self.method = head.method
        target = head.target
        if "?" in target or "%" in target or "#" in target:
            parts = urlsplit(target)
            self.path = unquote(parts.path)
            self.query: Mapping[str, str] = dict(parse_qsl(parts.query))
        else:
            self.path, self.query = target, {}
        self.headers: Mapping[str, str] = head.headers
        self._expects_continue = head.expects_continue

    async def body(self, limit: int = MAX_BODY) -> bytes:
        """The whole body; :class:`HttpError` 413 past ``limit`` bytes (checked up front)."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        conn = self._conn
        if self._expects_continue and not conn.reader.events:  # RFC 9110 §10.1.1 (curl)
            self._expects_continue = False
            await conn.stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await conn.next_event()
            if isinstance(event, bytes):
                size += len(event)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(event)
            elif event is END:
                conn.complete = True
                return b"".join(chunks)
            elif isinstance(event, Failed):
                raise HttpError(event.status, event.message)
            else:
                raise HttpError(400, "the request body ended early")


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"request body too large (the limit is {limit} bytes)")


App = Callable[[Request], Awaitable[Response]]


class _Connection:
    """The stream and the reader of one connection."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = RequestReader()
        self.complete = False
        """Whether the current request has been read to its end."""

    async def next_event(self, idle: bool = False) -> Event | None:
        """The next event; ``None`` when ``idle`` (between requests) and the client is gone
        or silent for ``_IDLE_TIMEOUT``."""
        events = self.reader.events
        while not events:
            if self.reader.done:  # after an Upgrade, or the end of the stream
                return None if idle else Failed(400, "the request ended early")
            data = b""
            with anyio.move_on_after(_IDLE_TIMEOUT) as scope:
                with contextlib.suppress(anyio.EndOfStream):
                    data = await self.stream.receive(_READ)
            if scope.cancelled_caught:
                if idle:
                    return None
                return Failed(408, "the request was not completed in time")
            self.reader.feed(data)
        return events.popleft()

    def consume_buffered(self) -> None:
        """Read what is left of the current request from the reader only (never the socket)."""
        events = self.reader.events
        while not self.complete and events and not isinstance(events[0], Head | Failed):
            if events.popleft() is END:
                self.complete = True


async def serve_connection(stream: anyio.abc.ByteStream, app: App) -> None:
    """Serve requests on ``stream`` until the client or an error closes it; always closes it."""
    conn = _Connection(stream)
    try:
        while True:
            event = await conn.next_event(idle=True)
            if isinstance(event, Failed):
                error = _error_response(HttpError(event.status, event.message))
                await _send(conn, error, "", False)
                await _linger(stream)
                return
            if not isinstance(event, Head):
                return  # closed, or idle too long
            conn.complete = False
            response = await _respond(app, Request(conn, event))
            conn.consume_buffered()
            if isinstance(response.body, Streaming):
                await _send_streaming(conn.stream, response.status, response.body)
                return
            if not await _send(conn, response, event.method, event.keep_alive):
                await _linger(stream)
                return
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
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
        return _internal_error()


def _internal_error() -> Response:
    return Response(status=500, body={"error": "internal error (see the control plane log)",
                                      "details": []})  # fmt: skip


def _error_response(exc: HttpError) -> Response:
    body: dict[str, Any] = {"error": exc.message, "details": exc.details}
    if exc.reason is not None:
        body["reason"] = exc.reason
    return Response(status=exc.status, body=body, headers=exc.headers)


async def _send(conn: _Connection, resp: Response, method: str, keep_alive: bool) -> bool:
    """Send ``resp``; whether the connection can carry another request."""
    raw = isinstance(resp.body, bytes)  # bytes go as they are, with the app's content-type
    body = resp.body if raw else (json.dumps(resp.body, indent=2) + "\n").encode()
    reusable = conn.complete and keep_alive
    kind = [] if raw else [("content-type", "application/json")]
    headers = [*kind, ("content-length", str(len(body))), *resp.headers]
    if not reusable:
        headers.append(("connection", "close"))
    try:
        head = response_head(resp.status, headers)
    except ValueError:
        log.exception("resource API: a response header cannot be sent")
        return await _send(conn, _internal_error(), method, keep_alive)
    await conn.stream.send(head if method == "HEAD" else head + body)
    return reusable


async def _send_streaming(stream: anyio.abc.ByteStream, status: int, body: Streaming) -> None:
    """Send ``body`` chunked; stop it when the client closes (watched by a second task)."""
    head = [("content-type", body.content_type), ("transfer-encoding", "chunked"),
            ("connection", "close")]  # fmt: skip
    try:
        await stream.send(response_head(status, head))
        await _stream_body(stream, body)
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the client went away: a task group reports it in a group, whichever task saw it


async def _stream_body(stream: anyio.abc.ByteStream, body: Streaming) -> None:
    async with anyio.create_task_group() as tg:

        async def watch_close() -> None:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while await stream.receive(_READ):
                    pass  # nothing more is expected; ignored
            tg.cancel_scope.cancel()

        async def send(chunk: bytes) -> None:
            if chunk:  # an empty chunk would end the body
                await stream.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))

        tg.start_soon(watch_close)
        await body.run(send)
        await stream.send(b"0\r\n\r\n")
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
