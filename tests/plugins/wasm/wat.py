"""The WAT test modules: ``modules/NAME.wat`` is a module body; :func:`build` wraps it in
``(module ...)`` after the shared imports (every Proxy-Wasm host function and a set of WASI
functions, as SDK-built modules import them) and the shared prelude, and assembles it with
``wasmtime.wat2wasm``."""

from __future__ import annotations

from pathlib import Path

import wasmtime

MODULES = Path(__file__).parent / "modules"


def source(name: str) -> str:
    parts = [(MODULES / f).read_text() for f in ("_imports.wat", "_prelude.wat", f"{name}.wat")]
    return "(module\n" + "".join(parts) + ")\n"


def module_text(body: str) -> str:
    """A module of the shared imports and prelude and ``body``."""
    parts = [(MODULES / f).read_text() for f in ("_imports.wat", "_prelude.wat")]
    return "(module\n" + "".join(parts) + body + ")\n"


def build(name: str, out_dir: Path, text: str | None = None) -> Path:
    """``modules/NAME.wat`` (or the module ``text``) as a ``.wasm`` file in ``out_dir``."""
    out = out_dir / f"{name}.wasm"
    out.write_bytes(wasmtime.wat2wasm(text if text is not None else source(name)))
    return out
