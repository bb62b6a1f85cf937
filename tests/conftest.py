from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all killed at teardown, logs shown if the test failed."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def plugin_env() -> dict[str, str]:
    """Environment that makes a sidecar load the test-only filters."""
    support = Path(__file__).parent / "support"
    return {"PLAIT_PLUGINS": "test_plugins", "PYTHONPATH": str(support)}
