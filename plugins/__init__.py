"""Filter discovery and registration (pluggy)."""

from ._registry import ENTRY_POINT_GROUP, FilterTypes, load_filter_types
from .hookspecs import hookimpl

__all__ = ["ENTRY_POINT_GROUP", "FilterTypes", "hookimpl", "load_filter_types"]
