"""plait's pluggy hook specifications.

pluggy is for discovery and registration only; it is never called per request
(a pluggy call with 5 implementations costs ~1.7 us, and pluggy is sync-only).
"""

from __future__ import annotations

import pluggy

from plait.sdk import FilterRegistry

__all__ = ["PROJECT", "hookimpl", "hookspec", "plait_register_filters"]

PROJECT = "plait"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def plait_register_filters(registry: FilterRegistry) -> None:
    """Register filter types with ``registry.register(FilterSpec(...))``.

    Called once per plugin when the plugin is loaded (historic: a plugin loaded
    late still registers). Implementations return nothing; registering a name
    twice raises :class:`ValueError`.
    """
