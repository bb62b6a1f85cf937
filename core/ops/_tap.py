"""The admin side of tap: ``GET /tap`` as a stream of JSON lines.

Theory of operation: :func:`tap_stream` checks the query (``path`` prefix,
``status`` code or class, ``max`` records) and returns the coroutine function
that serves it: it adds a :class:`plait.core.tap.Tap` watcher to the runtime's
list, sends each record the watcher receives as one JSON line, and removes the
watcher when it ends (the client went away and the admin server cancelled it,
``max`` records went out, or the server stops). The first line,
``{"started": true}``, says the watcher is in place: every request that ends
after it is seen. Records the watcher's bounded queue had to drop are reported
before the next record as ``{"dropped": N}`` (N since the last report), so a
reader knows its view has gaps.

With ``--workers N`` the supervisor's ``/tap`` (:func:`fan_in`) opens the same
tap on every worker's private admin socket and merges their lines into one
stream: it says ``started`` once every worker has, and counts ``max`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import h11

from ..tap import QUEUE, Tap, TapFilter

__all__ = ["fan_in", "tap_stream"]

Send = Callable[[bytes], Awaitable[None]]
STARTED = b'{"started":true}\n'


def _parse(query: str) -> tuple[TapFilter, int]:
    params = dict(parse_qsl(query))
    raw = params.get("max", "0") or "0"
    if not raw.isdigit():
        raise ValueError(f"max={raw!r}: expected a whole number of records (0: no limit)")
    return TapFilter.from_query(params), int(raw)


def tap_stream(taps: list[Tap], query: str) -> Callable[[Send], Awaitable[None]]:
    """What serves one ``GET /tap?QUERY``; ValueError (before anything starts) for a bad query."""
    wanted, limit = _parse(query)

    async def run(send: Send) -> None:
        tap = Tap(wanted)
        taps.append(tap)
        sent = reported = 0
        try:
            await send(STARTED)
            async for record in tap.receive:
                if tap.dropped > reported:
                    await send(json.dumps({"dropped": tap.dropped - reported}).encode() + b"\n")
                    reported = tap.dropped
                await send(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                sent += 1
                if limit and sent >= limit:
                    return
        finally:
            if tap in taps:
                taps.remove(tap)
            tap.close()

    return run


def fan_in(sockets: Sequence[Path], query: str) -> Callable[[Send], Awaitable[None]]:
    """The supervisor's ``GET /tap?QUERY``: every worker's tap, merged."""
    limit = _parse(query)[1]  # the same errors as one worker's

    async def run(send: Send) -> None:
        lines_in, lines_out = anyio.create_memory_object_stream[bytes](QUEUE)
        started = 0
        sent = 0
        async with anyio.create_task_group() as tg, lines_out:
            async with lines_in:
                for sock in sockets:
                    tg.start_soon(_worker_lines, sock, query, lines_in.clone())
            async for line in lines_out:
                if line == STARTED:
                    started += 1
                    if started == len(sockets):
                        await send(STARTED)
                    continue
                await send(line)
                if not line.startswith(b'{"dropped"'):
                    sent += 1
                    if limit and sent >= limit:
                        break
            tg.cancel_scope.cancel()

    return run


async def _worker_lines(sock: Path, query: str, out: anyio.abc.ObjectSendStream[bytes]) -> None:
    """Copy one worker's tap lines to ``out`` until it ends."""
    conn = h11.Connection(h11.CLIENT)
    pending = b""
    async with out, await anyio.connect_unix(sock) as stream:
        request = h11.Request(method="GET", target=f"/tap?{query}", headers=[("host", "worker")])
        await stream.send(conn.send(request) or b"")
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive())
                except anyio.EndOfStream:
                    conn.receive_data(b"")
                continue
            if isinstance(event, h11.Data):
                pending += bytes(event.data)
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    await out.send(line + b"\n")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return
