"""The documents a reader of the repository gets point only at what the repository holds.

Every ``NAME.md`` (with an optional ``#anchor``) named in the README, ``docs/``,
``pyproject.toml`` and ``setup.py`` resolves to a file of the repository (relative to
the naming file or to the root), and an anchor to one of that file's headings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS += [ROOT / "pyproject.toml", ROOT / "setup.py"]
REFERENCE = re.compile(r"(?<![\w/.-])([\w./-]+\.md)(?:#([\w-]+))?(?!\])")  # not a link text


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_document_is_in_the_repository(document: Path) -> None:
    for name, anchor in REFERENCE.findall(document.read_text()):
        target = next(
            (c for c in (document.parent / name, ROOT / name) if c.is_file()),
            None,
        )
        assert target is not None, f"{document.name} names {name}, which is not in the repository"
        if anchor:
            assert anchor in _anchors(target), f"{document.name}: {name}#{anchor} has no heading"
