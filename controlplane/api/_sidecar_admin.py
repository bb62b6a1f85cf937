"""The control plane as a client of sidecars' admin listeners (plain HTTP/1.1 on h11).

The registry knows where each connected sidecar's admin listener is
(``HOST:PORT``, from its node metadata). :func:`fetch` reads one whole answer
(``/metrics``, ``/config_dump``); :func:`copy_lines` follows a streamed one
(``/tap``), handing each line to a callback until the sidecar ends it or the
caller is cancelled. Both fail with :class:`AdminError`, which names the
address and the cause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import h11

__all__ = ["AdminError", "copy_lines", "fetch", "split_address"]

_TIMEOUT = 5.0


class AdminError(Exception):
    """A sidecar's admin listener could not be read: names it and why."""


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → ``(host, port)``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AdminError(f"admin address {address!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


async def _open(address: str, target: str) -> tuple[anyio.abc.SocketStream, h11.Connection]:
    host, port = split_address(address)
    try:
        with anyio.fail_after(_TIMEOUT):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError) as exc:
        raise AdminError(f"sidecar admin {address}: cannot connect: {exc}") from None
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=target, headers=[("host", address)])
    await stream.send((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
    return stream, conn


async def _events(stream: anyio.abc.SocketStream, conn: h11.Connection, address: str,
                  target: str, on_data: Callable[[bytes], Awaitable[None]]) -> None:  # fmt: skip
    """Drive ``conn`` to the end of a 200 response (its body to ``on_data``); AdminError for
    any other status, with the sidecar's message."""
    status = 0
    refusal = b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise AdminError(f"sidecar admin {address}: bad response: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                data = b""
            except (OSError, anyio.BrokenResourceError) as exc:
                raise AdminError(f"sidecar admin {address}: {exc}") from None
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            if status == 200:
                await on_data(bytes(event.data))
            else:
                refusal += bytes(event.data)[:4096]
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            if status != 200:
                why = refusal.decode(errors="replace").strip()
                raise AdminError(f"sidecar admin {address}: {target} answered {status}: {why}")
            return


async def fetch(address: str, target: str) -> bytes:
    """The body of ``GET target`` on the admin listener at ``address`` (status 200 only)."""
    chunks: list[bytes] = []

    async def keep(data: bytes) -> None:
        chunks.append(data)

    stream, conn = await _open(address, target)
    async with stream:
        try:
            with anyio.fail_after(_TIMEOUT):
                await _events(stream, conn, address, target, keep)
        except TimeoutError:
            raise AdminError(f"sidecar admin {address}: no answer to {target}") from None
    return b"".join(chunks)


async def copy_lines(
    address: str, target: str, on_line: Callable[[bytes], Awaitable[None]]
) -> None:
    """Follow the streamed ``GET target``: ``on_line`` gets each complete line (no newline)."""
    pending = b""

    async def split(data: bytes) -> None:
        nonlocal pending
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            await on_line(line)

    stream, conn = await _open(address, target)
    async with stream:
        await _events(stream, conn, address, target, split)
