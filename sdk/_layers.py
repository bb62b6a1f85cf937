"""The synchronous fast pair of an ``around_upstream`` layer.

``around_upstream`` is the one contract of an upstream layer; every layer has it.
A layer may also offer its *success path* as two plain calls, so the proxy can
run it without a coroutine (and, on HTTP/1.1, answer the request in callbacks
with no task at all):

``on_upstream_request(ctx, request) -> state``
    What ``around_upstream`` does before its first ``call_next``, outermost layer
    first. Returns any value (handed back in :attr:`UpstreamOutcome.state`), or
    :data:`RUN_ASYNC` (having changed nothing) to have its ``around_upstream``
    run for this request instead. May raise (e.g. an
    :class:`~plait.sdk.UpstreamError` with a status hint): that is the outcome
    the outer layers see, as if ``around_upstream`` had raised it.

``on_upstream_response(ctx, request, outcome) -> bool``
    What ``around_upstream`` does once ``call_next`` returned or raised
    (``outcome.response`` / ``outcome.error``), innermost layer first. ``True``:
    done, the outcome goes on unchanged. ``False``: this layer's async code
    would act on it (a retry); the proxy then calls ``around_upstream`` with the
    outcome in the stream's stash (:func:`first_try`): the first ``call_next``
    has already happened and ``on_upstream_request`` already did its work for it.
    Also called with a cancellation as ``outcome.error`` when the request is
    abandoned (the client left); the result is ignored then. The outcome object
    is the layer's for the call only (the proxy hands the same one on to the next
    layer out): keep what you need from it, not the object.

Per request, a layer sees either the pair, or ``around_upstream``, or the pair's
first half and then ``around_upstream`` holding the first try: never a call
twice. A layer with the pair must leave the same shared state after
``on_upstream_request`` + ``on_upstream_response`` (returning ``True``) as its
``around_upstream`` does for the same single try; the proxy uses whichever is
cheaper. Both hooks are plain ``def``; a layer has both or neither.
"""

from __future__ import annotations

from typing import Final

from ._context import StashKey, StreamContext
from ._messages import UpstreamResponse

__all__ = ["FIRST_TRY", "RUN_ASYNC", "UpstreamOutcome", "first_try"]


class _RunAsync:
    __slots__ = ()

    def __repr__(self) -> str:
        return "RUN_ASYNC"


RUN_ASYNC: Final = _RunAsync()
"""Returned by ``on_upstream_request``: run this layer's ``around_upstream`` instead."""


class UpstreamOutcome:
    """One try's outcome as a layer's ``on_upstream_response`` sees it."""

    __slots__ = ("error", "response", "state")

    def __init__(
        self, response: UpstreamResponse | None, error: BaseException | None, state: object
    ) -> None:
        self.response = response
        """The response head (and body to come), when the try got one."""
        self.error = error
        """What the try raised, when it got no response."""
        self.state = state
        """What this layer's ``on_upstream_request`` returned for this request."""

    def result(self) -> UpstreamResponse:
        """The response, or raise the error (what ``call_next`` would have done)."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


FIRST_TRY: StashKey[UpstreamOutcome] = StashKey("plait.first_try")
"""Where the proxy leaves the first try's outcome when ``on_upstream_response`` said
``False``; read it with :func:`first_try`."""


def first_try(ctx: StreamContext) -> UpstreamOutcome | None:
    """The first try's outcome when this ``around_upstream`` call continues the fast
    pair (its first ``call_next`` already happened), else ``None``. Takes it out of the
    stash, so layers further in never see it: call it first thing in ``around_upstream``."""
    stash = ctx._stash  # (not ``ctx.stash``: that would create one on every call)
    if stash is None:
        return None
    outcome = stash.get(FIRST_TRY, None)
    if outcome is not None:
        del stash[FIRST_TRY]
    return outcome
