"""Shared data is one store for every wasm plugin of the process, with compare-and-swap
(real wasmtime, a WAT module, two plugins)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk.testing import drive, make_request

from .conftest import instance
from .wat import build

pytestmark = pytest.mark.anyio


async def test_shared_data_is_shared_across_plugins_with_cas(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    module = build("shared", tmp_path)
    writer, reader = wasm_setup(module), wasm_setup(module)
    assert writer.plugin is not reader.plugin  # two plugins, two instances

    req = make_request(headers=[("x-set", "from-writer")])
    result = await drive(instance(writer), request_head=req)
    assert result.request_head.headers.get("x-shared") == "from-writer"
    # a set with a CAS that is not the key's version changes nothing
    assert result.request_head.headers.get("x-cas-mismatch") == "8"

    result = await drive(instance(reader), request_head=make_request())
    assert result.request_head.headers.get("x-shared") == "from-writer"
    assert result.request_head.headers.get("x-cas-mismatch") == "8"


def test_a_set_with_the_current_cas_succeeds_once() -> None:
    from plait.plugins.wasm._abi import Status
    from plait.plugins.wasm._shared import SharedData

    data = SharedData()
    assert data.set(b"k", b"1", 0) == Status.OK
    found = data.get(b"k")
    assert found is not None and found[0] == b"1"
    assert data.set(b"k", b"2", found[1]) == Status.OK
    assert data.set(b"k", b"3", found[1]) == Status.CAS_MISMATCH  # the version moved on
    assert data.get(b"k") == (b"2", found[1] + 1)
