"""A failing module is contained: traps, the CPU bound, the memory limit, ``proc_exit``;
FAIL_CLOSE answers 503, FAIL_OPEN skips the filter, a fresh instance replaces a broken one."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk import ConfigError, Headers, ResponseHead
from plait.sdk.testing import DriveResult, drive, make_request

from .conftest import instance
from .wat import build

pytestmark = pytest.mark.anyio


async def _get(setup: WasmSetup, *headers: tuple[str, str]) -> DriveResult:
    return await drive(instance(setup), request_head=make_request(headers=list(headers)))


async def test_trap_fails_closed_with_503_then_a_fresh_instance_serves(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    setup = wasm_setup("trap")
    assert (await _get(setup)).request_head.headers.get("x-count") == "1"
    assert (await _get(setup)).request_head.headers.get("x-count") == "2"
    broken = setup.plugin.vm
    failed = await _get(setup, ("x-trap", "1"))
    assert failed.status == 503 and not failed.upstream_called
    assert failed.local_reply is not None
    assert failed.local_reply.reason == f"wasm filter {setup.plugin.name} failed"
    after = await _get(setup)
    assert after.upstream_called
    assert after.request_head.headers.get("x-count") == "1"  # a new instance counts afresh
    assert setup.plugin.vm is not broken and setup.plugin.restarts == 1
    assert setup.plugin.failures == 1


async def test_trap_with_fail_open_skips_the_filter(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("trap", failStrategy="FAIL_OPEN")
    result = await _get(setup, ("x-trap", "1"))
    assert result.upstream_called and result.local_reply is None
    assert "x-count" not in result.request_head.headers
    assert (await _get(setup)).request_head.headers.get("x-count") == "1"


async def test_infinite_loop_is_cut_by_the_cpu_bound(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("trap", callbackTimeoutMs=50)
    started = time.monotonic()
    result = await _get(setup, ("x-loop", "1"))
    elapsed = time.monotonic() - started
    assert result.status == 503
    assert elapsed < 2.0, f"the loop ran {elapsed:.2f}s despite a 50 ms bound"
    assert "CPU time limit" in str(setup.plugin.vm.broken)
    assert (await _get(setup)).request_head.headers.get("x-count") == "1"


async def test_infinite_loop_with_fail_open_passes(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("trap", callbackTimeoutMs=20, failStrategy="FAIL_OPEN")
    result = await _get(setup, ("x-loop", "1"))
    assert result.upstream_called and result.local_reply is None


async def test_memory_grow_past_the_limit_is_refused(wasm_setup: Callable[..., WasmSetup]) -> None:
    small = wasm_setup("trap", memoryLimitBytes=4 << 20)
    result = await _get(small, ("x-grow", "1"))
    assert result.status == 503  # the module saw memory.grow fail, and aborted
    assert small.plugin.vm.broken is not None or small.plugin.restarts == 0
    roomy = wasm_setup("trap", memoryLimitBytes=64 << 20)
    grown = await _get(roomy, ("x-grow", "1"))
    assert grown.upstream_called and grown.request_head.headers.get("x-count") == "1"


async def test_proc_exit_in_the_response_phase_fails_closed(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    setup = wasm_setup("wasi")
    head = ResponseHead(status=200, headers=Headers([("x-exit", "1")]))
    result = await drive(instance(setup), request_head=make_request(), response_head=head)
    assert result.reply_phase == "response" and result.status == 503
    assert "proc_exit(3)" in str(setup.plugin.vm.broken)


async def test_replaced_instances_are_freed(wasm_setup: Callable[..., WasmSetup]) -> None:
    # Host functions reference their instance weakly: each trap replaces the instance,
    # and the broken ones must not pile up.
    setup = wasm_setup("trap")
    broken = []
    for _ in range(5):
        broken.append(weakref.ref(setup.plugin.vm))
        assert (await _get(setup, ("x-trap", "1"))).status == 503
        assert (await _get(setup)).upstream_called
    gc.collect()
    assert [r() for r in broken] == [None] * 5
    assert setup.plugin.restarts == 5


def test_a_module_needing_more_memory_than_the_limit_is_refused(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    # the module declares 64 pages (4 MiB) of initial memory; the limit allows 1 MiB
    text = (
        '(module (memory (export "memory") 64) (func (export "proxy_abi_version_0_2_1"))'
        ' (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0)))'
    )
    with pytest.raises(ConfigError, match="failed to start"):
        wasm_setup(build("big", tmp_path, text), memoryLimitBytes=1 << 20)
    assert wasm_setup(build("big", tmp_path, text), memoryLimitBytes=8 << 20).plugin.vm
