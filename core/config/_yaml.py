"""YAML loading that remembers where things are.

PyYAML's safe loader, with two changes: every mapping is a :class:`LineDict`
that records the line of each key (so errors can point at ``file:line``), and
a key given twice in one mapping is an error (plain PyYAML keeps the last one
silently, which hides typos and bad merges).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from plait.sdk import ConfigError

__all__ = ["LineDict", "key_line", "load_yaml_documents", "node_line"]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows its own line and the line of each key (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


def key_line(mapping: object, key: object) -> int:
    """The line of ``key`` in ``mapping`` if it came from YAML, else 0."""
    if isinstance(mapping, LineDict):
        return mapping.key_lines.get(key, mapping.line)
    return 0


def node_line(value: object) -> int:
    """The line a YAML mapping starts on, else 0."""
    return value.line if isinstance(value, LineDict) else 0


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict(node.start_mark.line + 1)
    yield data
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # resolves "<<" merge keys: merged pairs come first
    first_explicit = len(node.value) - explicit
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            ) from None
        if i >= first_explicit and key in data.key_lines:  # a merged key may be overridden
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (a key may appear once per mapping)",
                key_node.start_mark,
            )
        data[key] = loader.construct_object(value_node, deep=False)
        if i >= first_explicit:  # merged keys keep no line of their own: they live elsewhere
            data.key_lines[key] = key_node.start_mark.line + 1


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml_documents(text: str, file: str) -> list[tuple[object, int]]:
    """Every document in ``text`` with the line it starts on; ``None`` for empty ones.

    Raises:
        ConfigError: a YAML syntax error, located ``file:line:column``.
    """
    loader = _Loader(text)
    docs: list[tuple[object, int]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 0
            docs.append((loader.construct_document(node), line))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context:
            problem = f"{exc.problem} ({exc.context})"
        raise ConfigError(f"invalid YAML: {problem}", file=where) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return docs
