"""Filters a sidecar cannot run are refused: the previous chain keeps serving, and the
control plane shows why (``plait apply`` errors, or each sidecar's NACK in
``plait get workloads``) and which Filter.

One fleet (a control plane, two sidecars) serves the module's tests in turn; each test
starts from a good version of the Filter, applies a bad one, checks the reason and that
every sidecar still serves the good version, then applies a good one again (the NACK is
shown until a later ACK replaces it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._filter_fleet import (
    Fleet,
    modules,
    python_filter,
    sha256,
    start_fleet,
    wasm_filter,
)
from tests.support import Proc
from tests.support.controlplane import plait, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("refusals")
    procs: list[Proc] = []
    try:
        yield start_fleet(tmp, procs, n=2)
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def mods(fleet: Fleet) -> dict[str, Path]:
    return modules(fleet.tmp)


def _good(fleet: Fleet, mods: dict[str, Path], value: str) -> None:
    """Apply good versions of both Filters and wait until every sidecar serves them and
    no NACK is shown."""
    fleet.apply(python_filter(value), "py.yaml")
    fleet.apply(wasm_filter(mods["c"], sha256(mods["c"]), value), "wasm.yaml")
    wait_for(lambda: fleet.versions() == [(value, value)] * len(fleet.ports), timeout=10)
    wait_for(lambda: not any(_nacks(fleet)), timeout=10)


def _nacks(fleet: Fleet) -> list[str]:
    """What ``plait get workloads`` shows as each sidecar's last NACK (table column)."""
    out = plait(fleet.cp, "get", "workloads", "-o", "json").stdout
    items = json.loads(out)["items"]
    assert len(items) == len(fleet.ports), items
    return [
        str((i.get("status") or {}).get("lastNack", {}) and i["status"]["lastNack"]["message"])
        if (i.get("status") or {}).get("lastNack")
        else ""
        for i in items
    ]


def _refused_by_every_sidecar(fleet: Fleet, *needles: str) -> list[str]:
    def shown() -> list[str] | None:
        found = _nacks(fleet)
        return found if all(all(n in m for n in needles) for m in found) else None

    wait_for(shown, timeout=10)
    table = plait(fleet.cp, "get", "workloads").stdout
    assert all(n in table for n in needles), table
    return _nacks(fleet)


def test_a_module_without_the_abi_marker_is_refused_by_each_sidecar(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    _good(fleet, mods, "g1")
    fleet.apply(wasm_filter(mods["nomarker"], sha256(mods["nomarker"]), "bad"), "wasm.yaml")
    _refused_by_every_sidecar(fleet, "wasm-stamp", "not a Proxy-Wasm module", "ABI marker")
    assert fleet.versions() == [("g1", "g1")] * 2
    _good(fleet, mods, "g2")


def test_a_config_the_module_refuses_in_proxy_on_configure_is_refused(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    _good(fleet, mods, "g3")
    fleet.apply(wasm_filter(mods["wat"], sha256(mods["wat"]), "reject"), "wasm.yaml")
    _refused_by_every_sidecar(fleet, "wasm-stamp", "pluginConfig", "refused")
    assert fleet.versions() == [("g3", "g3")] * 2
    _good(fleet, mods, "g4")


def test_an_unknown_python_filter_type_is_refused_by_each_sidecar(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    _good(fleet, mods, "g5")
    text = python_filter("bad").replace("response-header-modifier", "acme-no-such-filter")
    path = fleet.tmp / "py.yaml"
    path.write_text(text)
    r = plait(fleet.cp, "apply", "-f", str(path))
    assert "'acme-no-such-filter'" in r.stderr and "is not installed" in r.stderr, r.stderr
    _refused_by_every_sidecar(fleet, "stamp", "unknown filter type 'acme-no-such-filter'")
    assert fleet.versions() == [("g5", "g5")] * 2
    _good(fleet, mods, "g6")


def test_an_unsatisfied_python_version_is_refused_with_the_installed_version(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    _good(fleet, mods, "g7")
    path = fleet.tmp / "py.yaml"
    path.write_text(python_filter("bad", extra=', version: ">=99"'))
    r = plait(fleet.cp, "apply", "-f", str(path), check=False)
    # the control plane has the same package: it refuses the apply, naming file and field
    assert r.returncode == 1, r.stdout
    assert "py.yaml" in r.stderr and "Filter/stamp" in r.stderr and "spec.python.type" in r.stderr
    assert "is installed, the config asks for '>=99'" in r.stderr, r.stderr
    assert fleet.versions() == [("g7", "g7")] * 2
    assert not any(_nacks(fleet))


def test_a_wrong_sha256_is_refused_at_apply_naming_both_hashes(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    _good(fleet, mods, "g8")
    wrong = sha256(mods["wat"])
    path = fleet.tmp / "wasm.yaml"
    path.write_text(wasm_filter(mods["c"], wrong, "bad"))
    r = plait(fleet.cp, "apply", "-f", str(path), check=False)
    assert r.returncode == 1, r.stdout
    assert "wasm.yaml" in r.stderr and "Filter/wasm-stamp: spec.wasm.sha256" in r.stderr
    assert sha256(mods["c"]) in r.stderr and wrong in r.stderr, r.stderr
    assert fleet.versions() == [("g8", "g8")] * 2


def test_a_module_whose_bytes_do_not_match_its_hash_is_refused_by_each_sidecar(
    fleet: Fleet, mods: dict[str, Path]
) -> None:
    """The sidecar checks what it fetched: a module altered in the control plane's store
    (here: other bytes under the hash) is refused, not run."""
    _good(fleet, mods, "g9")
    body = b"\0asm\1\0\0\0"  # a valid empty module, under the hash of another one
    fake = fleet.tmp / "fake.wasm"
    fake.write_bytes(body + b"\0" * 7)
    want = sha256(fake)
    assert fleet.cp.config is not None
    store = fleet.cp.config / "modules"
    (store / f"{want}.wasm").write_bytes(body)  # the control plane serves these bytes
    fleet.apply(wasm_filter(fake, want, "bad"), "wasm.yaml")
    _refused_by_every_sidecar(fleet, "wasm-stamp", f"module sha256 {want}", "sent bytes")
    assert fleet.versions() == [("g9", "g9")] * 2
    _good(fleet, mods, "g10")
