"""The hot-path modules run compiled (setup.py, mypyc) unless installed with PLAIT_COMPILE=0.

The suite must exercise what users run: a build that silently fell back to the
sources, or sources edited after the build, would make every other test check
something else than what ships.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stale_compiled.py"


def _helpers() -> dict[str, object]:
    return runpy.run_path(str(SCRIPT))


def test_every_listed_module_is_a_plait_source_file() -> None:
    helpers = _helpers()
    modules = helpers["compiled_modules"]()  # type: ignore[operator]
    assert modules, "[tool.plait.compiled] modules is empty"
    for name in modules:
        assert name.startswith(("plait.core.", "plait.sdk.", "plait.filters.")), name
        assert helpers["source_of"](name).is_file(), name  # type: ignore[operator]


def test_listed_modules_are_loaded_from_their_c_extensions() -> None:
    compiled = os.environ.get("PLAIT_COMPILE", "1") != "0"
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in _helpers()["compiled_modules"]():  # type: ignore[operator]
        path = importlib.import_module(name).__file__ or ""
        assert path.endswith(suffixes) == compiled, f"{name} loaded from {path}"


def test_filters_can_still_subclass_the_sdk_base_classes() -> None:
    """Native (compiled) classes cannot be subclassed by interpreted code unless they
    allow it: the SDK's filter base (compiled, ``allow_interpreted_subclasses``) and its
    body bases (interpreted) must stay subclassable, with state and async hooks."""
    import anyio

    from plait.sdk import (
        BufferedBody,
        FilterResult,
        Headers,
        HttpFilter,
        MessageBody,
        PassThroughFilter,
        StreamContext,
    )
    from plait.sdk.testing import make_context

    class MyFilter(PassThroughFilter):
        def __init__(self) -> None:
            self.seen = 0

        async def on_request_headers(
            self, ctx: StreamContext, headers: Headers, end_stream: bool
        ) -> FilterResult:
            self.seen += 1
            return None

    mine, ctx = MyFilter(), make_context()
    assert anyio.run(mine.on_request_headers, ctx, ctx.request.headers, True) is None
    assert mine.seen == 1 and isinstance(mine, HttpFilter)

    class MyBody(MessageBody):
        async def read(self) -> bytes:
            return b""

    class MyBuffered(BufferedBody):
        pass

    assert isinstance(MyFilter(), PassThroughFilter)
    assert anyio.run(MyBody().read_all) == b""
    assert anyio.run(MyBuffered(b"abc").read_all) == b"abc"


def test_a_build_is_stale_when_a_source_differs_from_what_it_was_built_from(
    tmp_path: Path,
) -> None:
    """Content, not file times: an edit made while the build ran is a stale build."""
    import hashlib
    import json

    stale = _helpers()["stale"]
    globs = stale.__globals__  # type: ignore[attr-defined]
    modules = globs["compiled_modules"]()
    built = {m: hashlib.sha256(globs["source_of"](m).read_bytes()).hexdigest() for m in modules}
    manifest = tmp_path / "sources.json"
    globs["MANIFEST"] = manifest
    if os.environ.get("PLAIT_COMPILE", "1") == "0":
        assert stale() == []  # type: ignore[operator]
        return
    manifest.write_text(json.dumps(built))
    assert stale() == []  # type: ignore[operator]
    built[modules[0]] = hashlib.sha256(b"the text the build read").hexdigest()
    manifest.write_text(json.dumps(built))
    assert stale() == [modules[0]]  # type: ignore[operator]
    manifest.unlink()
    assert stale() == modules  # type: ignore[operator]


def test_tuple_constants_of_compiled_modules_stay_python_tuples() -> None:
    """mypyc holds a module constant typed as a fixed-length tuple unboxed (a C struct of
    its items) and builds a new Python tuple (and a float object per float item) wherever
    the constant is used as an object: an index that is not a literal, a call such as
    ``bisect_left(BUCKETS, x)``, a ``for`` loop. A constant tuple display in a compiled
    module is therefore typed ``Final[tuple[T, ...]]``, which mypyc keeps as one tuple."""
    import ast

    helpers = _helpers()
    fixed = []
    for name in helpers["compiled_modules"]():  # type: ignore[operator]
        path = helpers["source_of"](name)  # type: ignore[operator]
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.annotation, ast.Name)
                and node.annotation.id == "Final"
                and isinstance(node.value, ast.Tuple)
                and len(node.value.elts) > 1
            ):
                fixed.append(f"{path.name}:{node.lineno}")
    assert not fixed, f"bare Final tuple constants (type them tuple[T, ...]): {fixed}"
