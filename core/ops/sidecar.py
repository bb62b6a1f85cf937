"""``plait sidecar``: the task tree of one sidecar process.

Task tree::

    run_sidecar (task group)
    ├── Listener.serve            one per listener; each owns its connections' tasks
    ├── serve_admin               /ready /metrics /config_dump /certs /quitquitquit
    ├── _signals                  SIGTERM/SIGINT → drain; SIGHUP → reload
    ├── watch_files               config file changed → reload (static mode)
    ├── watch_files               identity files changed → reload the identity (--identity-*)
    ├── XdsMode.run               ADS stream to the control plane (control-plane mode)
    └── IdentityAgent.run         certificate from the CA, renewed (with a join token)

Reload: the config is loaded and validated completely, then compiled into a
new snapshot and swapped in (:meth:`Runtime.apply`); listeners are added or
removed to match. Any error rejects the whole new config: the previous
snapshot (and its listeners) keeps serving, the error is logged and shown as
``last_error`` in ``/config_dump``. A listener that cannot bind rejects the
config too: the previous one is swapped back and its listeners restarted
(:meth:`Sidecar.install` says what that does not undo). In static mode, a file that
would leave a serving sidecar without any listener (an empty or half-written
file, far more likely than intent) is refused the same way. Every reload logs
one line: the config that is now active, or why it was refused.

``/ready`` answers 200 once a config is active and its listeners are bound (and,
with a join token, once the identity agent holds a certificate), never while the
sidecar has no listener.

Drain (SIGTERM, ``/quitquitquit``): stop accepting, close idle connections,
let in-flight streams finish for up to ``drainTimeout``, then cancel the rest.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError, mesh

from ..config import AdminConfig, MeshConfig, dump_config, load_config
from ..config._watch import watch_files
from ..identity.files import IdentityFiles
from ..identity.status import metric_values
from ..mesh_labels import LocalWorkload
from ..runtime import Runtime
from ..server._listener import Listener
from ._mesh import SidecarMesh
from .admin import SidecarAdmin, serve_http

if TYPE_CHECKING:  # imported only in control-plane mode: grpc costs ~10 MB of RSS
    from ..identity.agent import IdentityOptions
    from ..identity.bootstrap import ControlPlaneTrust
    from ..xds._mode import XdsMode, XdsOptions

__all__ = ["ListenerError", "SidecarOptions", "load_plugins", "run_sidecar"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SidecarOptions:
    config: Sequence[str] = ()
    sidecar: str | None = None
    reuse_port: bool = False
    admin: bool = True
    admin_port: int | None = None
    admin_socket: str | None = None
    """Serve the admin API on this unix socket instead (``--workers`` children)."""
    worker_index: int = 0
    watch: bool = True
    plugins: Sequence[str] = field(default_factory=tuple)
    xds: XdsOptions | None = None
    """Control-plane mode: config over xDS instead of ``config`` files."""
    identity_files: IdentityFiles | None = None
    """The workload certificate, key and trust bundle from files (``--identity-*``)."""
    identity_agent: IdentityOptions | None = None
    """Get and renew a mesh certificate from the CA into ``Runtime.identity``."""
    control_plane_trust: ControlPlaneTrust | None = None
    """Verifies the control plane's TLS ports (xDS, the CA's API): ``--ca-bundle`` or the
    join token's pin."""


def load_plugins(names: Sequence[str]) -> FilterTypes:
    """The registry: entry points plus modules named in ``names`` / ``PLAIT_PLUGINS``."""
    import importlib

    mods = [*names, *filter(None, os.environ.get("PLAIT_PLUGINS", "").split(","))]
    return load_filter_types(*(importlib.import_module(m.strip()) for m in mods))


def _load(opts: SidecarOptions, types: FilterTypes) -> MeshConfig:
    return load_config(opts.config, types, sidecar=opts.sidecar)


class Sidecar:
    def __init__(
        self,
        opts: SidecarOptions,
        types: FilterTypes,
        config: MeshConfig,
        xds: XdsMode | None = None,
        *,
        configured: bool = True,
    ) -> None:
        self.opts = opts
        self.types = types
        self.runtime = Runtime(config)
        # the mesh labels of its metrics: the Sidecar and Workload it runs
        sidecar = xds.opts.sidecar if xds is not None else opts.sidecar
        workload = xds.opts.workload if xds is not None else None
        self.runtime.local = LocalWorkload.of(sidecar, workload)
        # /metrics reads the identity's numbers at scrape time (none without a source)
        self.runtime.stats.identity_source = partial(metric_values, self.runtime.identity)
        if opts.identity_files is not None:
            opts.identity_files.load(self.runtime.identity)  # ConfigError names the flag
        self.listeners: dict[str, Listener] = {}
        self.quit = anyio.Event()
        self.ready = False
        self.configured = configured
        """False in control-plane mode until the first config arrived (``/ready`` says 503)."""
        self.xds = xds
        self.tg: TaskGroup

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self.tg = tg
            mesh.install(SidecarMesh(self.runtime, tg))
            await self._sync_listeners(self.runtime.snapshot.config)
            if self.opts.admin:
                admin = self.runtime.snapshot.config.admin
                if self.opts.admin_port is not None:
                    admin = type(admin)(bind=admin.bind, port=self.opts.admin_port)
                await tg.start(self._admin, admin)
            tg.start_soon(self._signals)
            trust = self.opts.control_plane_trust
            if self.xds is not None and trust is not None:
                # the TLS xDS port requires the sidecar's certificate (agent's or files')
                own = self.opts.identity_agent or self.opts.identity_files
                self.xds.use_tls(trust, self.runtime.identity if own else None)
            if self.opts.identity_agent is not None:
                from ..identity.agent import IdentityAgent

                agent = IdentityAgent(self.runtime.identity, self.opts.identity_agent, trust=trust)
                if self.xds is not None:
                    self.xds.follow_trust_bundle(self.runtime.identity)
                tg.start_soon(agent.run)
            if self.xds is not None:
                tg.start_soon(self.xds.run, self.install)
            elif self.opts.watch:
                tg.start_soon(watch_files, self.opts.config, self.reload)
            if self.opts.identity_files is not None and self.opts.watch:
                paths = self.opts.identity_files.paths
                tg.start_soon(watch_files, paths, self.reload_identity)
            _tune_gc()
            self.ready = True
            if self.is_ready():
                log.info("sidecar ready: %s", self._describe())
            else:
                log.info("sidecar started; not ready until the control plane sends a config")
            await self.quit.wait()
            await self.drain()
            mesh.install(None)
            tg.cancel_scope.cancel()

    async def _admin(self, admin: Any, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        handler = SidecarAdmin(
            self.runtime,
            dump=self.config_dump,
            on_quit=self.quit.set,
            is_ready=self.is_ready,
        )
        if self.opts.admin_socket:
            await serve_http(handler, unix_path=self.opts.admin_socket, task_status=task_status)
        else:
            await serve_http(handler, host=admin.bind, port=admin.port, task_status=task_status)

    def is_ready(self) -> bool:
        """Started, a config active, at least one listener bound (all of the config's), and
        the mesh certificate when the sidecar was given a join token."""
        identity = self.opts.identity_agent is None or self.runtime.identity.ready
        return self.ready and self.configured and bool(self.listeners) and identity

    def _describe(self) -> str:
        listeners = ", ".join(
            f"{name} {lis.config.bind}:{lis.config.port}" for name, lis in self.listeners.items()
        )
        return f"config {self.runtime.snapshot.version}, listeners: {listeners or 'none'}"

    async def _sync_listeners(self, config: MeshConfig, *, strict: bool = True) -> None:
        """Stop the listeners ``config`` drops or moves, start the ones it adds.

        Raises:
            ListenerError: a listener cannot bind (named, with its address); with
                ``strict=False`` it is logged and the other listeners are still started.
        """
        wanted = {lc.name: lc for lc in config.listeners}
        for name, listener in list(self.listeners.items()):
            lc = wanted.get(name)
            if lc is None or (lc.bind, lc.port, lc.protocol) != listener.key:
                listener.stop()
                listener.drain()
                del self.listeners[name]
        for name, lc in wanted.items():
            if name not in self.listeners:
                listener = Listener(self.runtime, lc, reuse_port=self.opts.reuse_port)
                try:
                    await self.tg.start(listener.serve)
                except OSError as exc:
                    if strict:
                        raise ListenerError(name, lc.bind, lc.port, exc) from exc
                    log.error("%s", ListenerError(name, lc.bind, lc.port, exc))
                    continue
                self.listeners[name] = listener
            else:
                self.listeners[name].reconfigure(lc)

    async def reload_identity(self) -> bool:
        """Read the identity files again (``--identity-*``); keep the current one on error."""
        if self.opts.identity_files is None:
            return True
        return self.opts.identity_files.reload(self.runtime.identity)

    async def reload(self) -> bool:
        """Load, validate and swap the config files; keep the old snapshot on any error."""
        if self.xds is not None:
            log.info("reload: control-plane mode, the config comes over xDS, not from files")
            return True
        try:
            config = _load(self.opts, self.types)
        except ConfigError as exc:
            self.runtime.reject(str(exc))
            return False
        if not config.listeners and self.listeners:
            self.runtime.reject(
                f"{', '.join(config.sources)}: the new config has no listeners and would take "
                f"down all {len(self.listeners)} serving (an empty or partly written file?); "
                "refused: a sidecar needs at least one listener"
            )
            return False
        return await self.install(config) is None

    async def install(self, config: MeshConfig) -> str | None:
        """Swap ``config`` in and bind its listeners; the reason it was refused, or ``None``.

        If a listener cannot bind, the previous config is compiled and swapped back and
        its listeners restarted before the refusal is reported. What that does not undo:
        connections of listeners the refused config moved or dropped were drained, and
        pooled upstream connections and breaker state of clusters it dropped are gone.
        """
        if config.version == self.runtime.snapshot.version and self.configured:
            self.runtime.unchanged()
            return None
        previous = self.runtime.snapshot.config
        try:
            self.runtime.apply(config)
            await self._sync_listeners(config)
        except (OSError, ConfigError) as exc:
            reason = str(exc) if isinstance(exc, ListenerError) else f"{type(exc).__name__}: {exc}"
            await self._restore(previous)
            self.runtime.reject(reason)
            return reason
        was_ready = self.is_ready()
        self.configured = True
        self.runtime.activated(self._describe())
        if self.ready and not was_ready and self.is_ready():
            log.info("sidecar ready: %s", self._describe())
        return None

    async def _restore(self, previous: MeshConfig) -> None:
        """Put ``previous`` back after a refused config: its snapshot and its listeners."""
        if self.runtime.snapshot.config is not previous:
            self.runtime.apply(previous)
        # A port of the previous config taken meanwhile: serve what can be served.
        await self._sync_listeners(previous, strict=False)

    async def drain(self) -> None:
        rt = self.runtime
        grace = (
            rt.snapshot.config.listeners[0].timeouts.drain if rt.snapshot.config.listeners else 5
        )
        log.info("draining: %d streams in flight, grace %.1fs", rt.active_streams, grace)
        rt.draining = True
        for listener in self.listeners.values():
            listener.stop()
        for listener in self.listeners.values():
            listener.drain()
        with anyio.move_on_after(grace):
            await rt.wait_idle()
        if rt.active_streams:
            log.warning("drain grace over: cancelling %d streams", rt.active_streams)
        for listener in self.listeners.values():
            listener.abort_all()
        if rt.active_streams:  # the cancelled streams end (and are logged) before the close
            with anyio.move_on_after(1.0):
                await rt.wait_idle()
        rt.close()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload_identity()
                    await self.reload()
                else:
                    log.info("signal %s: draining", signal.Signals(signum).name)
                    self.quit.set()

    def config_dump(self) -> dict[str, Any]:
        snap = self.runtime.snapshot
        return {
            "version": snap.version,
            "loaded_at": snap.loaded_at,
            "sources": list(snap.config.sources),
            "last_error": self.runtime.last_error,
            "last_error_at": self.runtime.last_error_at,
            "config": dump_config(snap.config),
            "clusterState": {
                name: state.describe() for name, state in self.runtime.upstreams.states().items()
            },
            "worker": self.opts.worker_index,
            "pid": os.getpid(),
            "uptime_s": time.time() - snap.loaded_at,
            **({"xds": self.xds.dump()} if self.xds is not None else {}),
        }


class ListenerError(OSError):
    """A listener cannot be bound: names the listener, its address and the cause."""

    def __init__(self, name: str, bind: str, port: int, cause: OSError) -> None:
        why = cause.strerror or str(cause)
        super().__init__(cause.errno, f"listener {name!r} cannot listen on {bind}:{port}: {why}")

    def __str__(self) -> str:
        return str(self.strerror)


def _tune_gc() -> None:
    """Move the start-up heap out of the collector's sight and collect young objects less often.

    Measured on the proxy under load: with CPython's default threshold (700) the cyclic
    collector took ~11% of CPU. Requests allocate many short-lived containers that
    reference counting frees anyway, so a larger first-generation threshold costs a
    little memory and saves that time; ``gc.freeze`` keeps the long-lived config,
    registry and module objects out of every full collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def run_sidecar(opts: SidecarOptions) -> None:
    """Run until drained.

    Raises:
        ConfigError: the initial config is invalid (or, in static mode, has no listener).
        ListenerError: a listener of the initial config cannot bind.
    """
    types = load_plugins(opts.plugins)
    if opts.xds is None:
        config = _load(opts, types)
        if not config.listeners:
            raise ConfigError(
                "no listeners: a sidecar needs a Sidecar resource with at least one ingress "
                "or egress listener (is the file empty?)",
                file=", ".join(config.sources),
            )
        await Sidecar(opts, types, config).run()
        return
    from ..xds._mode import XdsMode

    admin = AdminConfig(port=opts.admin_port if opts.admin_port is not None else 15000)
    mode = XdsMode(opts.xds, types, admin)
    saved = mode.initial()
    config = saved or MeshConfig(version="", listeners=(), clusters={}, routes={}, admin=admin)
    await Sidecar(opts, types, config, mode, configured=saved is not None).run()
