"""HTTP/1.1 for the API server, sans-I/O: requests parsed by llhttp (httptools), responses framed.

Theory of operation: :class:`RequestReader` is fed one connection's bytes as they arrive
(:meth:`RequestReader.feed`; ``b""`` for the end of the stream) and appends what they
hold, in order, to :attr:`RequestReader.events`: a :class:`Head` (method, target,
headers, whether the client waits for ``100 Continue``), the body as ``bytes`` pieces,
:data:`END` once the request is complete, :data:`CLOSED` for a stream that ended between
requests, and a :class:`Failed` (the status and message to answer with) for input the
server does not accept. After a failure, after a request that closes the connection and
after an Upgrade or CONNECT request the reader ignores all further input: the server
answers what it has and closes.

llhttp checks the syntax: the request line, tokens, field values (no obs-fold, bare CR
or LF, whitespace before the colon), the chunked framing, and conflicting
Content-Length / Transfer-Encoding. This module adds what llhttp leaves to the caller:
HTTP/1.0 and 1.1 only (505), exactly one Host in HTTP/1.1 (RFC 9112 §3.2), a head of at
most ``max_head`` bytes (431; counted across reads, so a head sent one byte at a time is
bounded too) and a stream that ends mid-request (400).

llhttp parses every request of the bytes it is given (pipelining), so events can queue
up; the server feeds the next read only once the queue is empty, so the queue holds at
most one read's worth.
"""

from __future__ import annotations

import http
from collections import deque
from dataclasses import dataclass
from typing import Final

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

__all__ = ["CLOSED", "END", "Failed", "Head", "RequestReader", "response_head"]

MAX_HEAD = 64 * 1024

END: Final = "end"
"""The request's body is complete."""
CLOSED: Final = "closed"
"""The stream ended between requests."""


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    target: str
    headers: dict[str, str]
    """Lower-case names; repeated fields joined with ``", "``."""
    expects_continue: bool
    keep_alive: bool
    """Whether the connection may carry another request after this one."""


@dataclass(frozen=True, slots=True)
class Failed:
    status: int
    message: str


Event = Head | bytes | str | Failed


class _Stop(Exception):
    """Raised in a callback to stop llhttp; the failure is in ``RequestReader._failure``."""


class RequestReader:
    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self.events: deque[Event] = deque()
        self._max_head = max_head
        self._parser = HttpRequestParser(self)
        self._done = False  # failed, closing or upgraded: input is ignored
        self._last = False  # the request being read is the connection's last
        self._failure: Failed | None = None
        self._in_message = False
        self._in_head = False
        self._head_bytes = self._size = self._hosts = 0
        self._url: list[bytes] = []
        self._fields: list[tuple[bytes, bytes]] = []

    def feed(self, data: bytes) -> None:
        if self._done:
            return
        if not data:
            self._done = True
            if self._in_message:
                self.events.append(self._fail(400, "the connection closed mid-request"))
            else:
                self.events.append(CLOSED)
            return
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._done = True  # the request is complete; what follows is not HTTP
        except HttpParserError as exc:
            self._done = True
            if self._failure is None and not (self._last and not self._in_message):
                self._fail(400, f"malformed HTTP request: {exc}")  # not after a closing one
            if self._failure is not None:
                self.events.append(self._failure)
            return
        if self._in_head:  # a head spanning reads: bound what llhttp holds of it
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._done = True
                self.events.append(self._fail(431, f"request head over {self._max_head} bytes"))

    @property
    def done(self) -> bool:
        """Whether further input is ignored (nothing more will come of it)."""
        return self._done

    def _fail(self, status: int, message: str) -> Failed:
        self._failure = Failed(status, message)
        return self._failure

    # -- llhttp callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_bytes = self._size = self._hosts = 0
        self._url = []
        self._fields = []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        self._size += len(name) + len(value) + 4
        if len(name) == 4 and name.lower() == b"host":
            self._hosts += 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        if self._size > self._max_head:
            self._stop(431, f"request head over {self._max_head} bytes")
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._stop(505, f"HTTP version {version} not supported (HTTP/1.1 or 1.0)")
        headers: dict[str, str] = {}
        for raw, value in self._fields:
            name = raw.decode("ascii", "replace").lower()
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        if version == "1.1" and self._hosts != 1:
            self._stop(400, "malformed HTTP request: expected exactly one Host header")
        self._last = not parser.should_keep_alive() or parser.should_upgrade()
        expects = version == "1.1" and headers.get("expect", "").lower() == "100-continue"
        method = parser.get_method().decode("ascii")
        target = b"".join(self._url).decode("ascii", "replace")
        self.events.append(Head(method, target, headers, expects, not self._last))

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self.events.append(END)
        if self._last:
            self._done = True
            raise _Stop  # nothing after a request that closes the connection is read

    def _stop(self, status: int, message: str) -> None:
        self._fail(status, message)
        raise _Stop


_REASONS: Final = {int(s): s.phrase.encode("ascii") for s in http.HTTPStatus}


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """The status line and header section of a response (``ValueError`` on CR/LF in a field)."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"response header {name!r}: CR or LF in a field")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"\r\n")
    return b"".join(lines)
