"""A stream that pauses for its HTTP callouts waits for them, in its own task.

After a stream callback, the adapter hands what the module dispatched to
:func:`dispatched`. When the callback paused (and did not resume, reply or close
in the same callback) and some calls are the stream's own, the hook's result is
:class:`~plait.sdk.Pending`: the chain awaits :func:`_wait`, which runs those
calls in a task group of the stream's task, delivers each response to the root
context (``proxy_on_http_call_response``), runs the calls the module dispatched
for the stream while answering, and then takes the module's decision: a local
reply (``proxy_send_local_response``) is the hook's ``LocalReply``, a
``proxy_continue_stream`` for the paused direction is Continue, a stream that is
still paused with nothing left to resume it fails per ``failStrategy``. Every
other call (the module did not pause, or the call is the root context's) runs in
the background (``_callout.run_in_background``). A stream that does not pause
never leaves the synchronous path.

If the client leaves while the stream waits, its task is cancelled: the calls
are cancelled with it (their upstream streams reset) and answered at once as
failed (0 headers), so the module forgets their tokens; the stream's
``proxy_on_done``/``_log``/``_delete`` follow once, as for any stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from plait.sdk import FilterResult, Pending

from ._callout import Callout, deliver, perform, run_in_background
from ._state import StreamState

if TYPE_CHECKING:
    from ._vm import WasmVM

__all__ = ["dispatched"]

Decide = Callable[[], FilterResult]
Failed = Callable[[Exception], FilterResult]


def _split(vm: WasmVM, s: StreamState | None) -> list[Callout]:
    """Take the outbox: the calls of ``s`` are returned, the others start in the background."""
    calls, vm.outbox = vm.outbox, []
    mine = [c for c in calls if s is not None and c.stream is s]
    others = [c for c in calls if s is None or c.stream is not s]
    if others:
        run_in_background(vm, others)
    return mine


def dispatched(
    vm: WasmVM, s: StreamState, paused: bool, decide: Decide, failed: Failed
) -> Pending[FilterResult] | None:
    """``Pending`` when the stream waits for its calls, else ``None`` (the calls, if any,
    run in the background). ``decide`` makes the hook's result once the calls are
    answered; ``failed`` contains a module failure."""
    if not paused or s.reply is not None or s.closed:
        _split(vm, None)
        return None
    mine = _split(vm, s)
    if not mine:
        return None
    return Pending(_wait(vm, s, mine, decide, failed))


async def _wait(
    vm: WasmVM, s: StreamState, calls: list[Callout], decide: Decide, failed: Failed
) -> FilterResult:
    errors: list[Exception] = []
    unanswered = {call.token: call for call in calls}

    async def one(call: Callout) -> None:
        response = await perform(call)
        del unanswered[call.token]
        if errors:
            return
        try:
            deliver(vm, call, response)
        except Exception as exc:  # GuestFailure: the instance is broken
            errors.append(exc)
            return
        for more in _split(vm, s):  # dispatched for this stream while answering
            unanswered[more.token] = more
            tg.start_soon(one, more)

    try:
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(one, call)
    except anyio.get_cancelled_exc_class():
        _abandon(vm, list(unanswered.values()))
        raise
    if errors:
        return failed(errors[0])
    if vm.broken is not None:
        return failed(RuntimeError(vm.broken))
    return decide()


def _abandon(vm: WasmVM, calls: list[Callout]) -> None:
    """The stream is gone (its calls were cancelled): answer each call as failed, so the
    module forgets its token (SDKs keep one per call until it is answered)."""
    for call in calls:
        try:
            deliver(vm, call, None)
        except Exception:  # GuestFailure: the instance is broken; the stream is gone anyway
            return
