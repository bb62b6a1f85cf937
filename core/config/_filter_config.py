"""A filter's config, parsed by its filter type: shared by the translator and the xDS decoder.

The type's own parser (``FilterSpec.parse_config``) decides what is valid; a
:class:`~plait.sdk.ConfigError` it raises is re-located under the field the config came from, so
the error names the file and field (YAML) or the resource and field (xDS).

A filter use may also ask for a version of the package that provides its type
(``python: {type, version: ">=1.2,<2"}``, a PEP 440 specifier): the sidecar checks it
against the distribution installed here (``importlib.metadata``), so a fleet whose
sidecars run another version refuses the config (and keeps its last good one) rather
than run a filter the operator did not ask for.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from plait.sdk import ConfigError, FilterSpec

from ._fields import Loc

__all__ = ["check_version", "installed_version", "parse_filter_config", "parse_specifier"]


def parse_specifier(text: str, loc: Loc) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise loc.expected("a PEP 440 version specifier (e.g. '>=1.2,<2')", text) from None


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return packages_distributions()


def installed_version(spec: FilterSpec[Any]) -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed package that provides ``spec``."""
    top = getattr(spec.make, "__module__", "").partition(".")[0]
    for dist in dict.fromkeys(_distributions().get(top, ())):
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None


def check_version(spec: FilterSpec[Any], constraint: str, loc: Loc) -> None:
    """Raise a located error unless the installed provider of ``spec`` satisfies
    ``constraint``."""
    wanted = parse_specifier(constraint, loc)
    found = installed_version(spec)
    if found is None:
        raise loc.error(
            f"filter type {spec.name!r}: no installed distribution provides it, so version "
            f"{constraint!r} cannot be checked"
        )
    dist, have = found
    if not wanted.contains(have, prereleases=True):
        raise loc.error(
            f"filter type {spec.name!r}: {dist} {have} is installed, the config asks for "
            f"{constraint!r}"
        )


def parse_filter_config(spec: FilterSpec[Any], raw: object, loc: Loc) -> object:
    """``spec.parse_config(raw)``, with its errors located at ``loc``."""
    if spec.parse_config is None:
        if raw not in (None, {}):
            raise loc.error(f"filter type {spec.name!r} takes no config")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise loc.expected("a mapping", raw)
    try:
        return spec.parse_config(raw)
    except ConfigError as err:
        raise loc.relocate(err) from None
    except Exception as exc:  # a third-party parser that raises something else
        raise loc.error(f"invalid config for {spec.name!r}: {exc!r}") from exc
