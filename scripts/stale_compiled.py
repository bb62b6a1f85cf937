"""Print the compiled hot-path modules whose C extension is missing or was not built from
the source as it is now.

The modules are listed in pyproject.toml (``[tool.plait.compiled]``) and built by
setup.py with mypyc; an extension next to its ``.py`` is what Python imports, so a
stale one would run old code. The build records the SHA-256 of every source as it read
it (``build/mypyc/sources.json``); a source whose content differs from that record is
stale, whatever the file times say (an edit made while the build ran leaves a newer
extension built from the older text). ``scripts/setup.sh`` rebuilds when this prints
anything, and the test session refuses to start on a stale build. Nothing is printed
when ``PLAIT_COMPILE=0`` (the uncompiled install). Stdlib only.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "build" / "mypyc" / "sources.json"


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
    try:
        built: dict[str, str] = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        built = {}
    out = []
    for module in compiled_modules():
        digest = hashlib.sha256(source_of(module).read_bytes()).hexdigest()
        if extension_of(module) is None or built.get(module) != digest:
            out.append(module)
    return out


if __name__ == "__main__":
    for name in stale():
        print(name)
    sys.exit(0)
