"""The HTTP/1.1 upstream pool's keep-alive bookkeeping, over real loopback connections.

Idle connections are closed by one sweep timer per pool once they have been idle
for ``idle_timeout`` (the pool's list is ordered by release time); a connection
reused in time stays open; the warmest connection is reused first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from plait.core.config._model import Endpoint
from plait.core.upstream._h1 import H1Pool

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A TCP server that accepts and holds connections (the pool only needs sockets)."""
    accepted: list[asyncio.StreamWriter] = []

    async def on_conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield port, accepted
    srv.close()
    for w in accepted:
        w.close()


def _pool(port: int, idle: float) -> H1Pool:
    return H1Pool(
        Endpoint(address="127.0.0.1", port=port), connect_timeout=2, idle_timeout=idle, max_idle=8
    )


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    pool = _pool(server[0], idle=1.0)
    stream = await pool.open_stream()
    conn = stream.conn
    pool.release(conn)
    await anyio.sleep(0.3)
    assert not conn.closed and pool.take() is not None  # reused in time: still open
    pool.release(conn)
    await anyio.sleep(1.5)
    assert conn.closed, "the idle connection outlived idle_timeout"
    assert pool.take() is None
    pool.close()


async def test_the_sweep_keeps_younger_connections_and_reuses_the_warmest(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    pool = _pool(server[0], idle=1.0)
    old = (await pool.open_stream()).conn
    young = (await pool.open_stream()).conn
    pool.release(old)
    await anyio.sleep(0.6)
    pool.release(young)
    await anyio.sleep(0.6)  # old: idle 1.2 s (expired); young: 0.6 s
    assert old.closed and not young.closed
    stream = pool.take()
    assert stream is not None and stream.conn is young
    pool.release(young)
    pool.release(old)  # already closed: take() drops it and returns the next one
    again = pool.take()
    assert again is not None and again.conn is young
    assert pool.take() is None
    pool.release(young)
    pool.close()
    await anyio.sleep(0.05)
    assert young.closed


async def test_closing_the_pool_closes_idle_connections_and_stops_the_sweep(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    pool = _pool(server[0], idle=10)
    conn = (await pool.open_stream()).conn
    pool.release(conn)
    pool.close()
    await anyio.sleep(0.05)
    assert conn.closed and pool._sweeper is None
