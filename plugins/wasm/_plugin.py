"""A configured wasm filter in this process: its module, its instance, its recovery.

A :class:`WasmPlugin` is made when a config naming the module is parsed: it
loads the compiled module (``_engine.py``) and starts one instance
(``_vm.py``); a module that cannot be loaded, fails to start or refuses its
configuration is a :class:`~plait.sdk.ConfigError`, so a bad filter never
replaces a good chain. Plugins are shared: configs that are the same (module
hash, configurations, limits) get the same plugin for as long as a chain holds
it, so a config reload that leaves a filter unchanged keeps its instance.

One instance serves every stream of the process (the event loop is the
worker), with one context per stream. When the instance breaks (a trap, the
CPU bound, ``proc_exit``), the streams it was serving fail per the filter's
``failStrategy`` and the next stream gets a fresh instance, started the same
way. A fresh instance that does not start leaves the plugin unavailable for
:data:`RESTART_BACKOFF` seconds (streams fail per ``failStrategy`` meanwhile)
before the next attempt, so a module that crashes at start cannot make every
request pay a start-up.
"""

from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Final

from plait.sdk import ConfigError

from ._config import WasmConfig
from ._engine import CompiledModule, ModuleError, load
from ._properties import PluginInfo
from ._ticker import Ticker
from ._vm import GuestFailure, StartRefused, VmSettings, WasmVM

__all__ = ["RESTART_BACKOFF", "WasmPlugin", "plugin_for"]

log = logging.getLogger(__name__)
RESTART_BACKOFF: Final = 1.0

_plugins: weakref.WeakValueDictionary[tuple[object, ...], WasmPlugin] = (
    weakref.WeakValueDictionary()
)


class WasmPlugin:
    """One configured module and its current instance."""

    def __init__(self, config: WasmConfig, compiled: CompiledModule) -> None:
        self.config = config
        self.compiled = compiled
        self.name = config.plugin_name
        self.settings = VmSettings(
            info=PluginInfo(config.plugin_name, config.root_id, config.vm_id),
            plugin_config=config.plugin_config,
            vm_config=config.vm_config,
            environ=tuple(f"{k}={v}".encode() for k, v in config.env),
            memory_limit=config.memory_limit,
            cpu_limit=config.callback_timeout,
            log=logging.getLogger(f"plait.wasm.{config.plugin_name}"),
        )
        self.failures = 0
        """Callbacks that failed (traps, deadline, ...) since the plugin was made."""
        self.restarts = 0
        self._retry_at = 0.0
        self.ticker = Ticker(self)
        """Runs the root context's ticks, ready queues and callouts (``_ticker.py``)."""
        self.vm: WasmVM = self._start()

    def _start(self) -> WasmVM:
        vm = WasmVM(self.compiled, self.settings)
        vm.on_tick_period = self.ticker.poke
        vm.start()
        return vm

    def current(self) -> WasmVM | None:
        """The instance for an event outside streams (``None`` while none can be had)."""
        try:
            return self.vm_for_stream()
        except GuestFailure:
            return None

    def vm_for_stream(self) -> WasmVM:
        """The instance for a new stream: the current one, or a fresh one if it broke.
        Raises :class:`GuestFailure` while no instance can be had."""
        vm = self.vm
        if vm.broken is None:
            return vm
        now = time.monotonic()
        if now < self._retry_at:
            raise GuestFailure(f"no instance: {vm.broken}")
        try:
            fresh = self._start()
        except (GuestFailure, StartRefused) as exc:
            self._retry_at = now + RESTART_BACKOFF
            vm.broken = f"a fresh instance did not start: {exc}"
            log.error("wasm filter %s: %s", self.name, vm.broken)
            raise GuestFailure(vm.broken) from exc
        self.restarts += 1
        log.warning("wasm filter %s: replaced its broken instance (%s)", self.name, vm.broken)
        self.vm = fresh
        return fresh

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        # The text, not the exception: its frames hold the instance (a log handler that
        # keeps records would keep every broken instance alive).
        log.error("wasm filter %s failed: %s", self.name, str(error))


def plugin_for(config: WasmConfig) -> WasmPlugin:
    """The plugin for ``config`` (shared with other chains that use the same one); raises
    :class:`ConfigError` naming the field when the module cannot serve."""
    try:
        module = Path(config.module) if config.module else None
        compiled = load(module, config.sha256, Path(config.cache_dir))
    except ModuleError as exc:
        raise ConfigError(str(exc), field="module" if config.module else "sha256") from None
    key = (compiled.sha256, *(getattr(config, f) for f in config.__slots__ if f != "module"))
    found = _plugins.get(key)
    if found is not None:
        return found
    try:
        plugin = WasmPlugin(config, compiled)
    except StartRefused as exc:
        raise ConfigError(f"the module refused it: {exc}", field=exc.field) from None
    except GuestFailure as exc:
        raise ConfigError(f"the module failed to start: {exc}", field="module") from None
    _plugins[key] = plugin
    return plugin
