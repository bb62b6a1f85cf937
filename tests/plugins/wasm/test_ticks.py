"""The root context's events outside streams, through a real sidecar process and real HTTP
on loopback: a trap in ``proxy_on_tick`` breaks the instance like any trap (a fresh one
replaces it, the sidecar keeps serving); shared-queue items reach ``proxy_on_queue_ready``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import Proc, http_get, start_mesh

from .test_callout import metric, wait_for
from .wat import build, module_text

pytestmark = pytest.mark.e2e

TRAPS_ON_TICK = """
  (func (export "proxy_abi_version_0_2_1"))
  (global $ticks (mut i32) (i32.const 0))
  (data (i32.const 1024) "trapping.ticks")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $proxy_define_metric (i32.const 0) (i32.const 1024) (i32.const 14) (i32.const 24)))
    (global.set $ticks (i32.load (i32.const 24)))
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 50)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $proxy_increment_metric (global.get $ticks) (i64.const 1)))
    unreachable)
"""


def test_a_trap_in_on_tick_replaces_the_instance(tmp_path: Path, procs: list[Proc]) -> None:
    module = build("traps_on_tick", tmp_path, module_text(TRAPS_ON_TICK))
    filters = f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{tmp_path / 'c'}'}}}}]"
    port, sidecar = start_mesh(tmp_path, procs, filters=filters)
    # each tick traps; the next tick gets a fresh instance, which sets its period again
    wait_for(lambda: metric(sidecar, "wasm_trapping_ticks") >= 3)
    logs = sidecar.logs()
    assert "proxy_on_tick trapped" in logs
    assert "replaced its broken instance" in logs
    for _ in range(3):
        status, _, _ = http_get(port, "/ok")
        assert status == 200
    time.sleep(0.2)
    assert metric(sidecar, "wasm_trapping_ticks") >= 4


def test_shared_queue_items_reach_the_owner_in_on_queue_ready(
    tmp_path: Path, procs: list[Proc]
) -> None:
    module = build("queue", tmp_path)
    filters = f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{tmp_path / 'c'}'}}}}]"
    port, sidecar = start_mesh(tmp_path, procs, filters=filters)
    assert http_get(port, "/abc")[0] == 200
    assert http_get(port, "/de")[0] == 200
    wait_for(lambda: metric(sidecar, "wasm_queue_bytes") == 7, timeout=3)
    assert metric(sidecar, "wasm_queue_empty") >= 1  # each drain ends with EMPTY
