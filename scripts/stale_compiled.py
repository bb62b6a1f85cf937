"""Print the compiled hot-path modules whose C extension is missing or older than the source.

The modules are listed in pyproject.toml (``[tool.plait.compiled]``) and built by
setup.py with mypyc; an extension next to its ``.py`` is what Python imports, so a
stale one would run old code. ``scripts/setup.sh`` rebuilds when this prints
anything, and the test session refuses to start on a stale build. Nothing is
printed when ``PLAIT_COMPILE=0`` (the uncompiled install). Stdlib only.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["plait"]["compiled"]["modules"]
    return modules


def source_of(module: str) -> Path:
    """``plait.core.x`` -> ``core/x.py`` (the package-dir mapping)."""
    return ROOT / (module.removeprefix("plait.").replace(".", "/") + ".py")


def extension_of(module: str) -> Path | None:
    src = source_of(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        ext = src.with_name(src.stem + suffix)
        if ext.exists():
            return ext
    return None


def stale() -> list[str]:
    if os.environ.get("PLAIT_COMPILE", "1") == "0":
        return []
    out = []
    for module in compiled_modules():
        ext = extension_of(module)
        if ext is None or ext.stat().st_mtime < source_of(module).stat().st_mtime:
            out.append(module)
    return out


if __name__ == "__main__":
    for name in stale():
        print(name)
    sys.exit(0)
