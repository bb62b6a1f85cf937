"""``plait filter new NAME``: a pip-installable filter package to start from.

The package it writes works as it is: its filter (a dozen lines: set a response
header from its config) is registered under ``NAME`` in the ``plait.filters``
entry-point group, its config is parsed into a frozen dataclass with errors that
name the field, and its tests drive it with :mod:`plait.sdk.testing` (no proxy,
no sockets) and run the contract's conformance check. ``pip install -e DIR``
then ``pytest DIR`` pass before the author changes a line; ``plait filters``
lists it and a listener's ``filters: [{type: NAME, ...}]`` runs it.

Layout (``src`` layout, so the tests run against the installed package)::

    DIR/pyproject.toml       name plait-filter-NAME, entry point NAME = MODULE
    DIR/README.md            install, test, configure
    DIR/src/MODULE/__init__.py   the hook implementation registering the FilterSpec
    DIR/src/MODULE/filter.py     config, parser, filter
    DIR/src/MODULE/py.typed
    DIR/tests/test_filter.py

This module depends on the standard library only; the ``filter`` command reaches
the ``plait`` CLI through its ``plait.commands`` entry point.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from string import Template
from typing import Any, Final

__all__ = ["ScaffoldError", "new_filter", "register"]

_NAME: Final = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")


class ScaffoldError(ValueError):
    """The name or the target directory cannot be used (the message says why)."""


_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "plait-filter-$name"
version = "0.1.0"
description = "The $name filter for plait sidecars"
requires-python = ">=3.11"
dependencies = ["plait"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."plait.filters"]
$name = "$module"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
$module = ["py.typed"]
""")

_INIT = Template('''\
"""The $name filter: registered with plait through the ``plait.filters`` entry point."""

from plait.plugins import hookimpl
from plait.sdk import FilterRegistry, FilterSpec

from .filter import Config, Filter, parse

__all__ = ["Config", "Filter", "parse"]


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(name="$name", make=Filter, parse_config=parse, description="$description")
    )
''')

_FILTER = Template('''\
"""The $name filter: its config and what it does to each stream."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plait.sdk import ConfigError, FilterResult, Headers, HttpFilter, StreamContext


@dataclass(frozen=True)
class Config:
    header: str
    value: str


def parse(raw: Mapping[str, Any]) -> Config:
    """The YAML/xDS mapping -> Config; a bad field raises ConfigError naming it."""
    for field in ("header", "value"):
        if not isinstance(raw.get(field), str) or not raw[field]:
            raise ConfigError(f"expected a non-empty string, got {raw.get(field)!r}", field=field)
    return Config(raw["header"].lower(), raw["value"])


class Filter(HttpFilter):
    def __init__(self, config: Config) -> None:
        self.config = config

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        headers.set(self.config.header, self.config.value)
        return None
''')

_TESTS = Template('''\
"""The $name filter, driven without a proxy (plait.sdk.testing)."""

import asyncio

import pytest

from plait.plugins import load_filter_types
from plait.sdk import ConfigError
from plait.sdk.testing import check_filter, drive

import $module
from $module import Config, Filter, parse

CONFIG = {"header": "x-$name", "value": "on"}


def test_registered_and_conforms_to_the_contract() -> None:
    spec = load_filter_types($module)["$name"]
    check_filter(spec, CONFIG)


def test_sets_the_response_header() -> None:
    result = asyncio.run(drive(Filter(parse(CONFIG))))
    assert result.upstream_called
    assert result.response_head is not None
    assert result.response_head.headers.get("x-$name") == "on"


@pytest.mark.parametrize("bad", [{}, {"header": "x-a"}, {"header": "", "value": "v"}])
def test_a_bad_config_names_the_field(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse(bad)
    assert err.value.field in ("header", "value")


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        parse(CONFIG).value = "off"  # type: ignore[misc]
    assert parse(CONFIG) == Config("x-$name", "on")
''')

_README = Template("""\
# plait-filter-$name

A [plait](https://github.com/) filter: $description.

    pip install -e '.[test]'     # into the environment plait runs in
    pytest                       # the filter's tests: no proxy, no sockets
    plait filters                # lists "$name" once installed

Use it in a listener's chain:

```yaml
filters:
- type: $name
  config: {header: x-$name, value: "on"}
```

The filter is in `src/$module/filter.py`; the hooks it may override are those of
`plait.sdk.HttpFilter`, and `plait.sdk.testing` drives it through a request and a
response in tests.
""")


def new_filter(name: str, directory: Path | None = None) -> Path:
    """Write the package for filter ``name`` into ``directory`` (default
    ``./plait-filter-NAME``), which must not exist or be empty; the directory."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"filter name {name!r}: expected lowercase letters, digits and single "
            "dashes, starting with a letter (e.g. add-team-header)"
        )
    target = directory if directory is not None else Path(f"plait-filter-{name}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target}: exists and is not an empty directory")
    module = "plait_filter_" + name.replace("-", "_")
    fields = {
        "name": name,
        "module": module,
        "description": "sets a response header from its config",
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{module}/__init__.py": _INIT,
        f"src/{module}/filter.py": _FILTER,
        "tests/test_filter.py": _TESTS,
    }
    for rel, template in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(fields))
    (target / "src" / module / "py.typed").write_text("")
    return target


def register(subparsers: Any) -> None:
    """The ``plait filter`` command (the ``plait.commands`` entry point)."""
    f = subparsers.add_parser("filter", help="filter authoring: plait filter new NAME")
    fsub = f.add_subparsers(dest="filter_cmd", required=True, metavar="SUBCOMMAND")
    n = fsub.add_parser("new", help="write a pip-installable filter package to start from")
    n.add_argument("name", help="the filter's registry name (type: in a listener's filters)")
    n.add_argument("--dir", type=Path, help="where to write it (default ./plait-filter-NAME)")
    n.set_defaults(func=_new)


def _new(args: argparse.Namespace) -> int:
    try:
        target = new_filter(args.name, args.dir)
    except (ScaffoldError, OSError) as exc:
        print(f"plait filter new: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {target}/ : pip install -e '{target}[test]' && pytest {target}")
    return 0
