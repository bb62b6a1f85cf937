"""``wasm``: Proxy-Wasm (ABI 0.2.0/0.2.1) modules as plait filters, run with wasmtime.

Registered through the ``plait.filters`` entry point like every other filter
(the core never names it). A listener's filter list names it with its module
and configuration (``_config.py``); the module is compiled once per content
hash (``_engine.py``), one instance per process serves every stream with one
context per stream (``_plugin.py``, ``_vm.py``), and the adapter (``_filter.py``)
maps the filter contract's hooks onto the module's callbacks. Registering the
type imports nothing of wasmtime; the first config that names a module does. See
``docs/wasm.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.plugins.hookspecs import hookimpl
from plait.sdk import FilterRegistry, FilterSpec, HttpFilter

from ._config import WasmConfig, parse_config

if TYPE_CHECKING:
    from ._filter import WasmFilter
    from ._plugin import WasmPlugin

__all__ = ["WASM", "WasmSetup", "parse_config", "plait_register_filters", "precompile"]


@dataclass(frozen=True, slots=True)
class WasmSetup:
    """The parsed config of one ``wasm`` filter: its plugin, and the class per stream."""

    config: WasmConfig
    sha256: str
    """The module's content hash (which module version ``/config_dump`` shows as active)."""
    plugin: WasmPlugin = field(repr=False)
    cls: type[WasmFilter] = field(repr=False)


def _parse(raw: Mapping[str, Any]) -> WasmSetup:
    # wasmtime is imported only once a config names a module: a sidecar without wasm
    # filters never loads it.
    from ._filter import filter_class
    from ._plugin import plugin_for

    config = parse_config(raw)
    plugin = plugin_for(config)
    return WasmSetup(config, plugin.compiled.sha256, plugin, filter_class(plugin))


def _make(setup: WasmSetup) -> HttpFilter:
    return setup.cls(setup.plugin)


def precompile(sha256: str, cache_dir: Path) -> None:
    """Compile the module ``<cache_dir>/<sha256>.wasm`` ahead of the config that names it.
    Safe in a worker thread (a sidecar calls it there for the modules a pushed config names,
    so the compile runs beside the event loop); a module that cannot be used is left to
    the config's parse to report."""
    from ._engine import ModuleError, load

    with contextlib.suppress(ModuleError):
        load(None, sha256, cache_dir)


WASM: FilterSpec[WasmSetup] = FilterSpec(
    name="wasm",
    make=_make,
    parse_config=_parse,
    description="run a Proxy-Wasm module (ABI 0.2.x) as a filter",
)


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(WASM)
