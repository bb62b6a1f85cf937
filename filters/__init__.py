"""plait's built-in filters, registered through the ``plait.filters`` entry point.

plait's own ``pyproject.toml`` declares ``builtin = "plait.filters"``, so the
built-ins are found exactly like a third-party package's filters.
"""

from typing import Any

from plait.plugins import hookimpl
from plait.sdk import FilterRegistry, FilterSpec

from .authz import AUTHORIZATION
from .circuit_breaker import CIRCUIT_BREAKER
from .fault import FAULT
from .header_modifier import REQUEST_HEADER_MODIFIER, RESPONSE_HEADER_MODIFIER
from .load_balancer import LOAD_BALANCER
from .path_deny import PATH_DENY
from .retry import RETRY
from .traffic_split import WEIGHTED_SPLIT

__all__ = ["BUILTIN_FILTERS", "plait_register_filters"]

BUILTIN_FILTERS: tuple[FilterSpec[Any], ...] = (
    REQUEST_HEADER_MODIFIER,
    RESPONSE_HEADER_MODIFIER,
    PATH_DENY,
    WEIGHTED_SPLIT,
    RETRY,
    CIRCUIT_BREAKER,
    LOAD_BALANCER,
    FAULT,
    AUTHORIZATION,
)


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    """Register every built-in filter type."""
    for spec in BUILTIN_FILTERS:
        registry.register(spec)
