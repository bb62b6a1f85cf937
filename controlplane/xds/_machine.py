"""What the SotW and Delta stream state machines share: their interface and its vocabulary.

A machine is sans-I/O: it turns one request into an :class:`Outcome` (what to report to the
observer, whether to answer) and builds responses from resources it is handed through a
:data:`Fetch` callable. The server (``_stream.py``) does the reading, writing, locking and
observer calls. One machine per stream; it is only touched by that stream's tasks, one at a
time (the stream's send lock is held around :meth:`Machine.response`).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ._source import Message

Fetch = Callable[[str, frozenset[str] | None], Mapping[str, Message]]


def subscribed(
    type_url: str, fetch: Fetch, wildcard: bool, names: frozenset[str] | set[str]
) -> dict[str, Message]:
    """What a subscription covers: the wildcard set, plus named resources outside it."""
    found: dict[str, Message] = dict(fetch(type_url, None)) if wildcard else {}
    if names - found.keys():
        found.update(fetch(type_url, frozenset(names)))
    return found


"""``fetch(type_url, names)``: the stream's node's resources (``XdsSource.resources``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What one request means.

    Attributes:
        type_url: The request's type.
        ignored: An unknown type URL; nothing else applies.
        stale: The request echoed a nonce other than the latest one sent for its type, so its
            ACK/NACK part is void (the client has not seen the latest response yet).
        acked: The version the request ACKs, if it is an ACK.
        nacked: ``(version, message)`` if the request NACKs the latest response.
        respond: A response is due now (first request of a type, or a subscription change).
        force: Respond even if nothing differs from what was last sent (first request: the
            client waits for an answer, possibly empty, to finish its initial fetch).
        recheck: The client applied routes that no longer name a cluster kept for it
            (``_retain``): recompute CDS and EDS.
    """

    type_url: str
    ignored: bool = False
    stale: bool = False
    acked: str | None = None
    nacked: tuple[str, str] | None = None
    respond: bool = False
    force: bool = False
    recheck: bool = False


class Machine(Protocol):
    """A per-stream xDS state machine (SotW or Delta)."""

    def on_request(self, request: Message) -> Outcome:
        """Update subscriptions and ACK state from one request."""
        ...

    def response(self, type_url: str, fetch: Fetch, *, force: bool) -> Message | None:
        """The response to send for ``type_url`` now, or ``None`` if the client is up to date
        (and not ``force``). Records it as sent (its nonce becomes the latest)."""
        ...

    def subscribed(self) -> list[str]:
        """The types the client subscribed to, in push order (``ORDER``)."""
        ...


class Nonces:
    """Unique nonces: a random per-stream prefix (so a nonce from an earlier stream or another
    replica never matches) and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"
