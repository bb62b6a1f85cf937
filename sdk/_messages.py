"""What ``around_upstream`` layers pass down and get back.

A module of its own so that the compiled build (``[tool.plait.compiled]``) can
compile these two per-request classes while :mod:`plait.sdk._filter`, whose
``PassThroughFilter`` filters subclass, stays interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._body import MessageBody
from ._context import RequestHead, ResponseHead

__all__ = ["UpstreamRequest", "UpstreamResponse"]

_NO_EXCLUDE: frozenset[str] = frozenset()


@dataclass(slots=True, kw_only=True)
class UpstreamRequest:
    """What ``around_upstream`` layers pass down: the head and the body to send."""

    head: RequestHead
    body: MessageBody
    endpoint: str | None = None
    """The endpoint key (``address:port``) a layer chose; ``None``: the core picks."""
    exclude: frozenset[str] = _NO_EXCLUDE
    """Endpoint keys the core avoids when it picks (unless nothing else is left)."""

    # An explicit __init__ (dataclass keeps it): the generated one would run interpreted
    # even in the compiled build, and one of these is made per request.
    def __init__(
        self,
        *,
        head: RequestHead,
        body: MessageBody,
        endpoint: str | None = None,
        exclude: frozenset[str] = _NO_EXCLUDE,
    ) -> None:
        self.head = head
        self.body = body
        self.endpoint = endpoint
        self.exclude = exclude


@dataclass(slots=True, kw_only=True)
class UpstreamResponse:
    """What comes back up: the response head and its body (trailers on the body)."""

    head: ResponseHead
    body: MessageBody

    def __init__(self, *, head: ResponseHead, body: MessageBody) -> None:
        self.head = head
        self.body = body
