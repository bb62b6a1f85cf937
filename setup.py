"""Build step for plait's compiled hot path (everything else is in pyproject.toml).

The modules listed in ``[tool.plait.compiled] modules`` (pyproject.toml) are the
per-request HTTP/1.1 path (codec, exchange, inline driver, pools, transport glue) and
the resilience layers that run on every try.
They are plain, ``mypy --strict`` typed Python, and are also compiled to C
extensions with mypyc (part of mypy), which took plait's own CPU per request
from 28 to 23 us in the first measurement (docs/benchmarks.md). The Python
sources stay the reference: ``PLAIT_COMPILE=0 pip install -e .`` installs them
uncompiled, and everything behaves the same, only slower.

``PLAIT_OPT`` sets the C optimisation level (default ``3``; ``s`` gives a ~20 % smaller
extension, measured no faster or slower within this machine's noise).

mypy names a module after its directory, and plait's packages live in
``core/``, ``sdk/`` ... (the ``plait.*`` names come from the package-dir
mapping), so the sources are handed to mypyc through a symlink view
``build/mypyc-src/plait/<package>`` that gives them their real names.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VIEW = Path("build") / "mypyc-src"
MANIFEST = ROOT / "build" / "mypyc" / "sources.json"
"""The SHA-256 of each compiled source as the build read it (scripts/stale_compiled.py)."""
_read: dict[str, str] = {}
PACKAGES = ("core", "filters", "plugins", "controlplane", "sdk")


def _compiled_modules() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["plait"]["compiled"]["modules"]
    return modules


def _view() -> None:
    """build/mypyc-src/plait/<pkg> -> <pkg>/ (recreated: cheap, and never stale)."""
    top = ROOT / VIEW / "plait"
    top.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES:
        link = top / pkg
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..", "..", "..", pkg))


def _remove_extensions() -> None:
    """An uncompiled install must not leave an earlier build's extensions in the tree
    (Python would import them before the sources)."""
    for pkg in PACKAGES:
        for path in ROOT.glob(f"{pkg}/**/*.so"):
            path.unlink()


def _ext_modules() -> list[object]:
    if os.environ.get("PLAIT_COMPILE", "1") == "0":
        _remove_extensions()
        return []
    from mypyc.build import mypycify

    os.chdir(ROOT)
    _view()
    os.environ["MYPYPATH"] = str(VIEW)
    paths = [str(VIEW / (m.replace(".", "/") + ".py")) for m in _compiled_modules()]
    # hashed before mypyc reads them: an edit made during the build leaves the build stale
    for module in _compiled_modules():
        source = ROOT / (module.removeprefix("plait.").replace(".", "/") + ".py")
        _read[module] = hashlib.sha256(source.read_bytes()).hexdigest()
    # Not the lint configuration (scripts/lint.sh runs mypy --strict with every dependency
    # installed): pip builds in an isolated environment that holds only the build
    # requirements, so third-party imports are typed Any here, which mypyc compiles as
    # ordinary Python object calls. plait's own modules are all present and fully typed.
    flags = ["--config-file", "", "--python-version", "3.11", "--ignore-missing-imports"]
    flags += ["--explicit-package-bases", "--namespace-packages"]
    return list(
        mypycify(
            [*flags, *paths],
            opt_level=os.environ.get("PLAIT_OPT", "3"),
            # one shared library inside a plait package, so an editable install finds it
            group_name="plait.core._compiled",
            target_dir=str(Path("build") / "mypyc"),
        )
    )


class _BuildExt(build_ext):
    """Records, once the extensions are built, which source contents they were built from
    (``MANIFEST``): scripts/stale_compiled.py compares them with the sources'."""

    def run(self) -> None:
        MANIFEST.unlink(missing_ok=True)
        super().run()
        if self.inplace and _read:
            MANIFEST.parent.mkdir(parents=True, exist_ok=True)
            MANIFEST.write_text(json.dumps(_read, indent=1, sort_keys=True) + "\n")


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _BuildExt})
