"""A filter's config, parsed by its filter type: shared by the translator and the xDS decoder.

The type's own parser (``FilterSpec.parse_config``) decides what is valid; a
:class:`~plait.sdk.ConfigError` it raises is re-located under the field the config came from, so
the error names the file and field (YAML) or the resource and field (xDS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.sdk import ConfigError, FilterSpec

from ._fields import Loc

__all__ = ["parse_filter_config"]


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
