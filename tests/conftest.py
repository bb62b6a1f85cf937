from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Proc


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test an outdated build of the compiled hot path (it would run old code)."""
    import runpy

    script = Path(__file__).parent.parent / "scripts" / "stale_compiled.py"
    stale = runpy.run_path(str(script))["stale"]()
    if stale:
        pytest.exit(
            f"compiled modules older than their sources: {', '.join(stale)}; "
            "run `bash scripts/setup.sh` (or install with PLAIT_COMPILE=0)",
            returncode=2,
        )


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio only (the sidecar's loop; uvloop in production).
    Module scope, as anyio's own fixture: module-scoped async fixtures can use it."""
    return "asyncio"


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
