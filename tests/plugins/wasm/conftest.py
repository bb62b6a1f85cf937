"""Fixtures: the WAT modules built once per session, and wasm filter setups with a private
module cache."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait.plugins.wasm import WASM, WasmSetup
from plait.sdk import HttpFilter

from .wat import build

AS_MODULE = Path(__file__).parent / "modules" / "as_headers" / "build" / "filter.wasm"
_unique = itertools.count()


@pytest.fixture(scope="session")
def wat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wat")
    for name in ("headers", "body", "trap", "config", "wasi"):
        build(name, out)
    return out


@pytest.fixture
def wasm_setup(wat_dir: Path, tmp_path: Path) -> Callable[..., WasmSetup]:
    """``wasm_setup("headers", failStrategy="FAIL_OPEN")``: the parsed filter config of a WAT
    module (or a path), with a fresh plugin (a unique vmId) and this test's cache dir."""

    def make(module: str | Path, **config: Any) -> WasmSetup:
        path = module if isinstance(module, Path) else wat_dir / f"{module}.wasm"
        raw = {"module": str(path), "cacheDir": str(tmp_path / "cache"), **config}
        raw.setdefault("vmId", f"test-{next(_unique)}")
        assert WASM.parse_config is not None
        return WASM.parse_config(raw)

    return make


def instance(setup: WasmSetup) -> HttpFilter:
    """One stream's filter instance, as the chain makes it."""
    made: HttpFilter = WASM.factory(setup)()
    return made
