"""Rollout of Filters to a fleet: ``plait apply`` a Python Filter, then a wasm Filter, then
20 version swaps, to 3 sidecars under 32 concurrent keep-alive clients: every sidecar
serves each new version within 2 s of the apply and no request fails.

The sidecars get the wasm modules from the control plane (they have no module on
disk): ``plait apply`` uploads the module file, the control plane stores it by hash and
serves it, each sidecar fetches it into its cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e._filter_fleet import (
    Load,
    modules,
    python_filter,
    sha256,
    start_fleet,
    wasm_filter,
)
from tests.support import Proc
from tests.support.controlplane import plait, wait_for

pytestmark = pytest.mark.e2e

ROLLOUT_LIMIT = 2.0


def test_python_then_wasm_filter_then_20_swaps_reach_every_sidecar_and_drop_nothing(
    tmp_path: Path, procs: list[Proc]
) -> None:
    fleet = start_fleet(tmp_path, procs)
    mods = modules(tmp_path)
    sums = {k: sha256(p) for k, p in mods.items()}
    assert fleet.versions() == [(None, None)] * 3
    rollouts: list[float] = []

    def rolled_out(want: tuple[str | None, str | None]) -> float:
        took = wait_for(lambda: fleet.versions() == [want] * 3, timeout=10, step=0.01)
        rollouts.append(took)
        return took

    with Load(fleet.ports) as load:
        time.sleep(0.5)
        # a Python filter, through the CLI
        (tmp_path / "py.yaml").write_text(python_filter("py-1"))
        out = plait(fleet.cp, "apply", "-f", str(tmp_path / "py.yaml")).stdout
        assert "filter/stamp created" in out.lower(), out
        assert rolled_out(("py-1", None)) < ROLLOUT_LIMIT
        # a wasm filter: the CLI uploads the module file the Filter names (relative path)
        (tmp_path / "mod-c.wasm").write_bytes(mods["c"].read_bytes())
        (tmp_path / "wasm.yaml").write_text(wasm_filter("mod-c.wasm", sums["c"], "w-0"))
        out = plait(fleet.cp, "apply", "-f", str(tmp_path / "wasm.yaml")).stdout
        assert "filter/wasm-stamp created" in out.lower(), out
        assert rolled_out(("py-1", "w-0")) < ROLLOUT_LIMIT
        # 20 swaps: new config values, alternating modules (and the Python filter's value)
        for i in range(1, 21):
            kind = ("c", "wat")[i % 2]
            fleet.apply(wasm_filter(mods[kind], sums[kind], f"w-{i}"))
            if i % 5 == 0:
                fleet.apply(python_filter(f"py-{i}"), "py.yaml")
            want = (f"py-{i - i % 5}" if i >= 5 else "py-1", f"w-{i}")
            assert rolled_out(want) < ROLLOUT_LIMIT, (i, fleet.versions())
        time.sleep(0.3)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 1000, load.ok
    # every sidecar ends on the last version, and its /config_dump names the module it runs
    assert fleet.versions() == [("py-20", "w-20")] * 3
    print(f"\nrollout seconds (apply returned → all 3 sidecars serve it): "
          f"max {max(rollouts):.3f}, mean {sum(rollouts) / len(rollouts):.3f}, "
          f"requests {load.ok}")  # fmt: skip
    # wasmtime is loaded in the sidecars' processes, never in the control plane's
    assert all(_maps_wasmtime(s) for s in fleet.sidecars)
    assert not _maps_wasmtime(fleet.cp)
    # each sidecar fetched each module once (both are in one shared cache: 2 to 6 fetches)
    fetched = sum(s.logs().count("fetched wasm filter") for s in fleet.sidecars)
    assert 2 <= fetched <= 2 * len(fleet.sidecars), fetched


def _maps_wasmtime(proc: Proc) -> bool:
    """Whether the process has wasmtime's shared library mapped (it compiled or ran modules)."""
    return "wasmtime" in Path(f"/proc/{proc.popen.pid}/maps").read_text()
