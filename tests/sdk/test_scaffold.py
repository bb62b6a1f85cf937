"""``plait filter new``: the package it writes installs, passes its own tests and type
checks, ``plait filters`` finds it, and a real sidecar runs it from its config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PY, Proc, free_port, http_get, simple_config, start_echo, start_sidecar

NAME = "add-team-header"
MODULE = "plait_filter_add_team_header"


def _plait(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "plait.core.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _pythonpath(extra: Path) -> str:
    return ":".join([str(extra), *[p for p in sys.path if p]])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The scaffold written by the CLI into a working directory, then pip-installed (no
    network: the build uses this environment's setuptools) into a directory of its own."""
    work = tmp_path_factory.mktemp("scaffold")
    r = _plait("filter", "new", NAME, cwd=work)
    assert r.returncode == 0, r.stderr
    project = work / f"plait-filter-{NAME}"
    assert f"wrote plait-filter-{NAME}" in r.stdout
    site = work / "site"
    pip = [PY, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(project)], check=True, timeout=180)
    return project, site


@pytest.mark.e2e
def test_the_generated_tests_pass_against_the_installed_package(
    installed: tuple[Path, Path],
) -> None:
    project, site = installed
    r = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=project.parent,
        env={**os.environ, "PYTHONPATH": _pythonpath(site)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 passed" in r.stdout


@pytest.mark.e2e
def test_the_generated_package_type_checks_strictly(installed: tuple[Path, Path]) -> None:
    project, _ = installed
    view = Path(__file__).resolve().parents[2] / "build" / "typecheck"  # scripts/lint.sh's view
    if not (view / "plait" / "sdk").exists():
        pytest.fail("build/typecheck/ is missing: run scripts/lint.sh (make test does) first")
    r = subprocess.run(
        [PY, "-m", "mypy", "--strict", "--no-incremental", "src", "tests"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=project,
        env={**os.environ, "MYPYPATH": f"{project / 'src'}:{view}"},
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.e2e
def test_plait_lists_the_installed_filter(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, site = installed
    r = _plait("filters", cwd=tmp_path, env={"PYTHONPATH": _pythonpath(site)})
    assert r.returncode == 0, r.stderr
    line = next((x for x in r.stdout.splitlines() if x.startswith(NAME + " ")), "")
    assert f"({MODULE}" in line and "response header" in line, r.stdout


@pytest.mark.e2e
def test_a_sidecar_runs_the_generated_filter_from_its_config(
    installed: tuple[Path, Path], tmp_path: Path, procs: list[Proc]
) -> None:
    _, site = installed
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = tmp_path / "plait.yaml"
    chain = f"[{{type: {NAME}, config: {{header: X-Team, value: payments}}}}]"
    cfg.write_text(simple_config(echo.port, port, admin, filters=chain))
    sidecar = start_sidecar(cfg, admin, env={"PYTHONPATH": _pythonpath(site)})
    procs.append(sidecar)
    status, headers, body = http_get(port, "/")
    assert status == 200, body
    assert headers.get("x-team") == "payments"

    bad = tmp_path / "bad.yaml"
    bad.write_text(simple_config(echo.port, port, admin, filters=f"[{{type: {NAME}}}]"))
    r = _plait(
        "validate", "--config", str(bad), cwd=tmp_path, env={"PYTHONPATH": _pythonpath(site)}
    )
    assert r.returncode == 1
    assert "bad.yaml" in r.stderr and "header" in r.stderr and "non-empty string" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Name"], "lowercase letters"),
        (["-x"], "error"),
        (["double--dash"], "single"),
    ],
)
def test_a_bad_name_is_refused(args: list[str], message: str, tmp_path: Path) -> None:
    r = _plait("filter", "new", *args, cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr
    assert not any(tmp_path.iterdir())


def test_an_existing_directory_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    r = _plait("filter", "new", NAME, "--dir", str(target), cwd=tmp_path)
    assert r.returncode == 1
    assert "not an empty directory" in r.stderr
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
