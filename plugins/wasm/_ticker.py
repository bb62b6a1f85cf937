"""The root context's events outside streams: ticks, ready queues, root callouts.

A plugin gets one :class:`Ticker` task, started in the sidecar's task group
(:func:`plait.sdk.mesh.when_running`) the first time its instance sets a tick
period or registers a queue that fills. The task calls ``proxy_on_tick`` on the
plugin's current instance every ``proxy_set_tick_period_milliseconds`` period
(0 stops the ticks; the first comes one period after the call), delivers
``proxy_on_queue_ready`` for the queues that received items, and starts the HTTP
calls those callbacks dispatched (``_callout.run_in_background``). A failure in
a callback is the plugin's like any other (the instance is broken; the next
stream or tick gets a fresh one, which sets its own period).

The task holds its plugin weakly and re-checks it at least every
:data:`IDLE` seconds: once the plugin is gone, or no filter of the sidecar's
active config uses it any more (:meth:`plait.sdk.mesh.MeshHost.filter_configs`:
it was unloaded or replaced by a reload), the task ends. A plugin that some
active config used again later gets a task again at its next
``proxy_set_tick_period_milliseconds``.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import mesh
from plait.sdk.mesh import MeshHost

from ._callout import run_in_background

if TYPE_CHECKING:
    from ._plugin import WasmPlugin
    from ._vm import WasmVM

__all__ = ["IDLE", "Ticker"]

log = logging.getLogger(__name__)
IDLE: Final = 1.0
GRACE: Final = 30.0
"""Seconds a plugin may tick before a config that uses it is active."""


class Ticker:
    def __init__(self, plugin: WasmPlugin) -> None:
        self._plugin = weakref.ref(plugin)
        self._started = False
        self._wake: anyio.Event | None = None
        self._seen_active = False
        self._grace_until = 0.0

    def poke(self) -> None:
        """The instance changed its period or has a ready queue: (re)consider now."""
        if not self._started:
            self._started = True
            mesh.when_running(self._start)
        elif self._wake is not None:
            self._wake.set()

    def _start(self, host: MeshHost) -> None:
        plugin = self._plugin()
        name = plugin.name if plugin is not None else "?"
        host.start_soon(self._run, name=f"wasm filter {name} ticks")

    def _loaded(self, plugin: WasmPlugin) -> bool:
        host = mesh.current()
        if host is None:
            return False
        active = any(getattr(c, "plugin", None) is plugin for c in host.filter_configs())
        if active:
            self._seen_active = True
            return True
        # a plugin made for a config not yet swapped in gets a grace period
        return not self._seen_active and anyio.current_time() < self._grace_until

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # contained: the sidecar's task group must not fail
            log.exception("the tick task of a wasm filter failed")
            self._started = False

    async def _loop(self) -> None:
        self._seen_active = False
        self._grace_until = anyio.current_time() + GRACE
        next_tick: float | None = None
        while True:
            plugin = self._plugin()
            if plugin is None or not self._loaded(plugin):
                self._started = False
                return
            vm = plugin.current()
            now = anyio.current_time()
            period = vm.tick_period if vm is not None else 0.0
            if period <= 0:
                next_tick = None
            elif next_tick is None:
                next_tick = now + period
            elif now >= next_tick:
                next_tick = max(next_tick + period, now)
                _event(plugin, vm, "proxy_on_tick")
            if vm is not None and vm.ready_queues:
                _event(plugin, vm, "proxy_on_queue_ready")
            delay = IDLE if next_tick is None else min(max(next_tick - now, 0.0), IDLE)
            del plugin, vm
            self._wake = anyio.Event()
            with anyio.move_on_after(delay):
                await self._wake.wait()


def _event(plugin: WasmPlugin, vm: WasmVM | None, name: str) -> None:
    from ._vm import ROOT_ID, GuestFailure

    if vm is None:
        return
    try:
        if name == "proxy_on_queue_ready":
            ready, vm.ready_queues = vm.ready_queues, []
            for queue_id in ready:
                vm.call(name, vm.root, ROOT_ID, queue_id)
        else:
            vm.call(name, vm.root, ROOT_ID)
    except GuestFailure as exc:
        plugin.failed(exc)
    if vm.outbox:
        calls, vm.outbox = vm.outbox, []
        run_in_background(vm, calls)
