"""The README's "Writing a filter" example, taken from README.md itself (so they cannot drift):
it passes the conformance check, its pyproject.toml snippet makes a package whose filter
``plait filters`` finds, and a real sidecar runs it from a plugin module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from plait.plugins import load_filter_types
from plait.sdk.testing import check_filter, drive, make_request
from tests.support import PY, Proc, free_port, http_get, simple_config, start_echo, start_sidecar

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _block(language: str, section: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found is not None, f"no ```{language} block in the README section"
    return found[1]


def _blocks(language: str, section: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _module(name: str, code: str) -> ModuleType:
    module = ModuleType(name)
    exec(compile(code, str(README), "exec"), vars(module))
    return module


def _example_module() -> ModuleType:
    return _module("add_hello", _block("python", _section("Writing a filter")))


def test_the_readme_filter_passes_check_filter() -> None:
    types = load_filter_types(_example_module(), entry_points=False)
    spec = types["add-hello"]
    check_filter(spec)  # as the README says to

    async def run() -> None:
        res = await drive(spec.factory(None)(), request_head=make_request())
        assert res.request_head is not None
        assert res.request_head.headers.get("x-hello") == "world"

    import anyio

    anyio.run(run)


def test_the_readme_check_filter_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's pytest example, against the README's filter as ``add_hello``."""
    blocks = _blocks("python", _section("Writing a filter"))
    example = blocks[0]
    test_code = next(b for b in blocks if "def test_" in b)
    monkeypatch.setitem(sys.modules, "add_hello", _module("add_hello", example))
    tests = _module("test_readme", test_code)
    tests.test_add_hello()


def test_the_readme_policy_tries_again_on_429_through_the_core() -> None:
    """The README's upstream-layer example, run by the proxy's own walk of the layers."""
    from tests.filters._upstream import Script, cluster, context, request, through

    code = next(b for b in _blocks("python", _section("Writing a filter")) if "TryAgain" in b)
    policy = _module("retry_on_429", code).RetryOn429()
    upstream = cluster()
    script = Script(upstream, (429, {}), 200)
    ctx = context(upstream)

    async def run() -> int:
        return (await through([policy], ctx, request(ctx), script)).head.status

    import anyio

    assert anyio.run(run) == 200
    assert len(script.tries) == 2


@pytest.mark.e2e
def test_the_readme_package_installs_and_plait_finds_its_filter(tmp_path: Path) -> None:
    """The example and the pyproject.toml snippet, built as a package (pip, into a directory
    of its own): ``plait filters`` lists the filter through the entry point."""
    section = _section("Writing a filter")
    project = tmp_path / "project"
    project.mkdir()
    (project / "add_hello.py").write_text(_block("python", section))
    (project / "pyproject.toml").write_text(_block("toml", section))
    site = tmp_path / "site"
    pip = [PY, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(project)], check=True, timeout=120)
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "filters"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PYTHONPATH": _pythonpath(site)},
    )
    assert re.search(r"^add-hello\s.*\(add_hello\)$", r.stdout, re.M), r.stdout


@pytest.mark.e2e
def test_a_sidecar_runs_the_readme_filter(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "readme_filter.py").write_text(_block("python", _section("Writing a filter")))
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    cfg = tmp_path / "plait.yaml"
    cfg.write_text(simple_config(echo.port, port, admin, filters="[{type: add-hello}]"))
    sidecar = start_sidecar(
        cfg, admin, "--plugin", "readme_filter", env={"PYTHONPATH": _pythonpath(tmp_path)}
    )
    procs.append(sidecar)
    status, _, body = http_get(port, "/")
    assert status == 200
    assert json.loads(body)["headers"].get("x-hello") == "world", body


def _pythonpath(extra: Path) -> str:
    return ":".join([str(extra), *[p for p in sys.path if p]])
