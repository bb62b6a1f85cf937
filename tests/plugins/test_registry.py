"""Filter discovery: entry points, and plugin modules named directly."""

from __future__ import annotations

import importlib

from plait.plugins import load_filter_types
from plait.sdk.testing import check_filter


def test_an_installed_package_named_again_by_its_own_tests_counts_once() -> None:
    """A package's tests pass its module to ``load_filter_types`` while the same module is
    installed under the entry-point group: one registration, not a clash."""
    module = importlib.import_module("plait_example_filter")  # installed: tests/fixtures/
    types = load_filter_types(module)
    assert types.origin("example-stamp") == "plait_example_filter"
    check_filter(types["example-stamp"], {"value": "v"})
