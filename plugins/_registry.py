"""The filter registry: name → :class:`FilterSpec`, filled through pluggy.

Third-party filters are found through the ``plait.filters`` entry-point group;
plait's built-in filters register through that same group (``builtin =
plait.filters`` in plait's own ``pyproject.toml``), so the core treats both
alike and never names a filter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pluggy

from plait.sdk import FilterSpec

from . import hookspecs

__all__ = ["ENTRY_POINT_GROUP", "FilterTypes", "load_filter_types"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "plait.filters"


class FilterTypes(Mapping[str, FilterSpec[Any]]):
    """The registered filter types; implements :class:`plait.sdk.FilterRegistry`."""

    def __init__(self) -> None:
        self._specs: dict[str, FilterSpec[Any]] = {}

    def register(self, spec: FilterSpec[Any]) -> None:
        if not isinstance(spec, FilterSpec):
            raise TypeError(f"register() takes a FilterSpec, got {type(spec).__name__}")
        if spec.name in self._specs:
            raise ValueError(
                f"filter type {spec.name!r} registered twice "
                f"(by {self.origin(spec.name)} and {getattr(spec.make, '__module__', '?')})"
            )
        self._specs[spec.name] = spec

    def origin(self, name: str) -> str:
        """The module that provides filter type ``name``."""
        return str(getattr(self._specs[name].make, "__module__", "?"))

    def __getitem__(self, name: str) -> FilterSpec[Any]:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def load_filter_types(*extra_plugins: object, entry_points: bool = True) -> FilterTypes:
    """Discover every filter type.

    Args:
        extra_plugins: plugin objects/modules registered directly (tests, embedding);
            one the entry points already loaded (an installed package's own module,
            as its tests name it) counts once.
        entry_points: also load the ``plait.filters`` entry-point group.

    Returns:
        The filled registry. A plugin whose import fails is logged and skipped,
        so one broken package cannot stop a sidecar from starting; a name
        registered twice raises ``ValueError`` naming both plugins.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        _load_entry_points(pm)
    for plugin in extra_plugins:
        if not pm.is_registered(plugin):  # an installed package's module, named again
            pm.register(plugin)
    registry = FilterTypes()
    pm.hook.plait_register_filters.call_historic(kwargs={"registry": registry})
    return registry


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception:
            log.exception("filter plugin %s (%s) failed to load; skipped", ep.name, ep.value)
            continue
        pm.register(plugin, name=ep.name)
