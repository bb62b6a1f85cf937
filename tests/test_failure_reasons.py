"""Every failure reason the mesh can answer with is in the docs' table, and only those.

The reasons are found in the sources, not listed here: a ``reason=`` argument, a
module constant or class attribute whose name ends in ``reason`` (an error class's
``reason``, a filter's ``..._REASON``), an assignment to ``ctx.failure_reason``, the
reason argument of the HTTP/1.1 server's ``_fail`` and the values of its ``_reason``
table. An f-string's fields read ``NAME``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "config-reference.md"
SOURCES = ("core", "filters", "plugins", "sdk")
SKIPPED = (
    "core/codec",  # HTTP reason phrases of status lines, not mesh failure reasons
    "core/config",  # config loading: ConfigError never answers a request
    "sdk/testing.py",  # the filter authors' kit imitates the chain's answers
    "sdk/examples",  # example filters: their reasons are their own, not plait's
)
NOT_AN_ANSWER = {"invalid config"}  # ConfigError.reason: loading, never a response


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "NAME" for v in node.values)
    return None


def _strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.BoolOp):
        return [s for v in node.values for s in _strings(v)]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    text = _text(node)
    return [text] if text else []


def _target_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _assigned_reasons(body: list[ast.stmt], *, attributes: bool) -> list[str]:
    found: list[str] = []
    for node in body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(
                _target_name(t).lower().endswith("reason")
                and (attributes or isinstance(t, ast.Name))
                for t in targets
            ):
                found += _strings(node.value)
    return found


def _reason_value(node: ast.AST) -> ast.expr | None:
    """The value of a ``reason=`` argument or of an assignment to ``ctx.failure_reason``."""
    if isinstance(node, ast.keyword) and node.arg == "reason":
        return node.value
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Attribute) and t.attr == "failure_reason" for t in node.targets
    ):
        return node.value
    return None


def reasons_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    # module constants and class attributes (an error class's reason); not local variables
    found = set(_assigned_reasons(tree.body, attributes=False))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found.update(_assigned_reasons(node.body, attributes=False))
        elif (value := _reason_value(node)) is not None:
            found.update(_strings(value))
        elif isinstance(node, ast.Call) and _target_name(node.func) == "_fail":
            if len(node.args) >= 3:
                found.update(_strings(node.args[2]))
        elif isinstance(node, ast.FunctionDef) and node.name == "_reason":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Dict):
                    found.update(s for v in sub.values if v is not None for s in _strings(v))
    return found


def code_reasons() -> set[str]:
    found: set[str] = set()
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(SKIPPED):
                found |= reasons_in(path)
    return found - NOT_AN_ANSWER


def documented_reasons() -> set[str]:
    text = DOC.read_text()
    section = text[text.index("\n## Failure reasons\n") :]
    section = section[: section.find("\n## ", 1)]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def test_the_scan_finds_what_the_mesh_answers() -> None:
    """The scan itself: reasons known to be answered are found (else the test proves nothing)."""
    found = code_reasons()
    for reason in ("no route", "no healthy upstream", "filter NAME failed", "overflow",
                   "request headers timeout", "request headers too large", "fault delay injected",
                   "denied by path policy"):  # fmt: skip
        assert reason in found


def test_every_failure_reason_is_documented() -> None:
    missing = code_reasons() - documented_reasons()
    assert not missing, f"reasons the code emits that {DOC.name}'s table lacks: {sorted(missing)}"


def test_the_table_lists_no_reason_the_code_never_emits() -> None:
    stale = documented_reasons() - code_reasons()
    assert not stale, f"reasons in {DOC.name}'s table that no code emits: {sorted(stale)}"
