"""What a filter hook returns.

Each hook returns one of three results. The chain driver acts on them:

``Continue(data=None)``
    Pass the message on to the next filter. ``None`` means the same, so a hook
    may simply fall off its end. From a data hook, ``Continue(data=b"...")``
    passes ``data`` on instead of the chunk it was given (body rewriting).
``Buffer(limit)``
    Hold this message and call the hook again with the whole body once it has
    arrived (Envoy's ``StopIterationAndBuffer``). MUST be returned only from a
    headers or data hook. Past ``limit`` bytes the stream ends with 413 on the
    request side, or 500 on the response side, and the filter is not called again.
``LocalReply(status, headers, body)``
    Stop the chain and answer the client from the proxy. On the request side the
    upstream is never called. On the response side it replaces the upstream's
    response, provided the response head has not been sent yet; otherwise the
    stream is reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["CONTINUE", "Buffer", "Continue", "FilterResult", "LocalReply"]


@dataclass(frozen=True, slots=True)
class Continue:
    """Pass the message on (headers as the hook mutated them)."""

    data: bytes | None = None
    """From a data hook: the chunk to pass on instead of the one received."""


CONTINUE: Final = Continue()


@dataclass(frozen=True, slots=True)
class Buffer:
    """Call me again with the whole body; fail the stream past ``limit`` bytes."""

    limit: int = 1 << 20

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError(f"Buffer limit must be positive, got {self.limit}")


@dataclass(frozen=True, slots=True)
class LocalReply:
    """Answer from the proxy. ``headers`` are extra response headers."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())
    reason: str = ""
    """A short failure reason, sent back in ``x-plait-reason`` and written to the access log."""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"LocalReply status must be 100..599, got {self.status}")


FilterResult = Continue | Buffer | LocalReply | None
