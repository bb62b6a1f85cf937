"""How a failure becomes the answer to the client, the same on every path.

Two rules for mesh-generated errors (local replies and exceptions from any step
of an exchange):

* **One classification, wherever the error was raised.** An exchange runs steps
  inside task groups (the request-body pump, a tunnel's relays), and an anyio
  task group raises an ``ExceptionGroup`` even for one error. :func:`primary`
  finds the error that decides the answer (a filter's local reply first, then a
  :class:`~plait.sdk.PlaitError`, then anything else), so an upstream connect
  failure is a 503 whether or not the request body was streaming.
* **gRPC callers get gRPC.** A request whose ``content-type`` is
  ``application/grpc*`` gets an error reply as a trailers-only response (HTTP
  200, ``grpc-status``, ``grpc-message``; ``x-plait-reason`` kept) with
  the status a gRPC client acts on (:func:`grpc_reply`): UNAVAILABLE for what a
  retry elsewhere may fix, DEADLINE_EXCEEDED for timeouts, and so on.
"""

from __future__ import annotations

from typing import Final

from plait.sdk import Headers, LocalReply, PlaitError, RequestHead, ResponseHead

from .bodies import LocalReplyRaised

__all__ = ["grpc_reply", "is_grpc", "local_reply_head", "primary"]

# gRPC status codes (grpc/doc/statuscodes.md)
DEADLINE_EXCEEDED: Final = 4
PERMISSION_DENIED: Final = 7
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13
UNAVAILABLE: Final = 14
UNAUTHENTICATED: Final = 16

_GRPC_STATUS: Final = {
    503: UNAVAILABLE,  # connect failure, no (healthy) endpoint, overflow, draining
    502: UNAVAILABLE,  # the upstream reset: worth a retry elsewhere
    429: UNAVAILABLE,
    # gRPC's HTTP mapping (doc/http-grpc-status-mapping.md) says UNAVAILABLE for 504 too;
    # a mesh timeout is the caller's deadline or the route's, which a client acts on as
    # DEADLINE_EXCEEDED (not retried as if another endpoint could answer in time).
    504: DEADLINE_EXCEEDED,  # request, per-try and idle timeouts
    408: DEADLINE_EXCEEDED,
    403: PERMISSION_DENIED,  # a denial
    401: UNAUTHENTICATED,
    404: UNIMPLEMENTED,  # no route
}
"""HTTP status of a mesh-generated error → gRPC status; INTERNAL for the rest."""


def primary(exc: BaseException) -> BaseException:
    """The error that decides the answer: ``exc``, or the deciding one in a group."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, LocalReplyRaised):  # a filter answered while the body streamed
            return leaf
    for leaf in leaves:
        if isinstance(leaf, PlaitError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, Exception):  # not a cancellation (a BaseException)
            return leaf
    return leaves[0] if leaves else exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            out.append(exc)
    return out


def is_grpc(request: RequestHead) -> bool:
    """Is this a gRPC call (``application/grpc``, ``+proto``, ``-web``...)?"""
    raw = request.headers.get_raw(b"content-type")
    return raw is not None and raw[:16].lower() == b"application/grpc"


def grpc_reply(reply: LocalReply) -> LocalReply:
    """An error reply as a gRPC trailers-only response (unchanged if it is one already,
    or not an error)."""
    if reply.status < 400 or any(name.lower() == "grpc-status" for name, _ in reply.headers):
        return reply
    status = _GRPC_STATUS.get(reply.status, INTERNAL)
    message = reply.reason or (reply.body.decode("utf-8", "replace").strip() if reply.body else "")
    headers = (
        ("content-type", "application/grpc"),
        ("grpc-status", str(status)),
        ("grpc-message", _percent_encode(message or f"HTTP {reply.status}")),
        *((n, v) for n, v in reply.headers if n.lower() != "content-type"),
    )
    return LocalReply(200, b"", headers, reply.reason)


def _percent_encode(text: str) -> str:
    """``grpc-message`` encoding: printable ASCII except ``%`` as is, the rest ``%XX``."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode()
    )


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
