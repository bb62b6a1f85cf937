"""Test an upstream layer (``before_try`` / ``after_try``) with no proxy: part of
``plait.sdk.testing``.

:func:`drive_tries` plays the proxy for one layer around a scripted upstream:
each try calls ``before_try`` (awaiting a ``Pending``), takes the next scripted
answer (a status, a response, or an exception the try raised), and calls
``after_try`` with the :class:`~plait.sdk.TryOutcome`; a ``TryAgain`` makes
another try with its request. Backoffs are recorded, not slept. The layer sees
exactly what the proxy hands it: a ``before_try`` that raises refuses the try
(its ``after_try`` is not called, the error is the outcome).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._body import BufferedBody
from ._context import ResponseHead, StreamContext
from ._headers import Headers
from ._messages import UpstreamRequest, UpstreamResponse
from ._policy import Pending, TryAgain, TryOutcome

__all__ = ["Answer", "TriesResult", "drive_tries"]

Answer = int | UpstreamResponse | BaseException
"""One try's scripted upstream answer: a status (an empty response), a response, or
what the try raised (an ``UpstreamError`` such as ``UpstreamConnectError``)."""


@dataclass(slots=True, kw_only=True)
class TriesResult:
    """What the layer made of the scripted tries."""

    response: UpstreamResponse | None = None
    """The final response the layer let through, if any."""
    error: BaseException | None = None
    """What the request failed with, when it did."""
    requests: list[UpstreamRequest] = field(default_factory=list)
    """The request of each try, in order (``endpoint`` / ``exclude`` as the layer set them)."""
    waits: list[float] = field(default_factory=list)
    """The backoff before each try after the first (``TryAgain.after``)."""

    @property
    def tries(self) -> int:
        return len(self.requests)

    @property
    def status(self) -> int | None:
        return self.response.head.status if self.response is not None else None


def _response(answer: Answer) -> UpstreamResponse | BaseException:
    if isinstance(answer, int):
        return UpstreamResponse(
            head=ResponseHead(status=answer, headers=Headers()), body=BufferedBody(b"")
        )
    return answer


async def drive_tries(
    layer: object,
    ctx: StreamContext,
    request: UpstreamRequest,
    answers: Sequence[Answer],
    *,
    deadline: float = math.inf,
) -> TriesResult:
    """Drive ``layer`` (an ``HttpFilter`` with ``before_try``/``after_try``) through
    tries answered by ``answers`` in order; raises ``AssertionError`` if it asks for
    more tries than there are answers."""
    result = TriesResult()
    tries = 0
    while True:
        state: Any = None
        before = getattr(layer, "before_try", None)
        try:
            if before is not None:
                state = before(ctx, request)
                if isinstance(state, Pending):
                    state = await state.ready
        except Exception as exc:  # the layer refused the try
            result.error = exc
            return result
        if tries >= len(answers):
            raise AssertionError(f"the layer asked for try {tries + 1}; {len(answers)} scripted")
        answer = _response(answers[tries])
        tries += 1
        result.requests.append(request)
        response = answer if isinstance(answer, UpstreamResponse) else None
        error = None if isinstance(answer, UpstreamResponse) else answer
        after = getattr(layer, "after_try", None)
        again = None
        if after is not None:
            again = after(ctx, request, TryOutcome(response, error, state, tries, deadline))
            if inspect.isawaitable(again):
                raise AssertionError(
                    "after_try must be a plain function (it returned an awaitable)"
                )
        if isinstance(again, TryAgain):
            result.waits.append(again.after)
            request = again.request
            continue
        if again is not None:
            raise AssertionError(f"after_try returned {again!r}; expected None or TryAgain")
        result.response, result.error = response, error
        return result
