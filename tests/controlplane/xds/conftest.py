"""Fixtures of the modules that run real gRPC ADS streams (``pytestmark`` opts in)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest


@pytest.fixture(scope="module")
async def one_event_loop() -> AsyncIterator[None]:
    """All tests of the module on one event loop, drained before it closes.

    grpc.aio's completion-queue poller hands each finished operation to the loop the
    operation was started on; one arriving after that loop closed fails whichever test runs
    then ("Event loop is closed"). So the module keeps its loop, and gives grpc's last
    completions (channel and server shutdowns) a moment before the loop goes.
    """
    yield
    await anyio.sleep(0.2)
