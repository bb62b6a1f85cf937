"""``plait control-plane``: the store, the admin token and the resource API in one process.

Theory of operation: :func:`run_control_plane` opens the SQLite store in the
data directory, makes or reads the admin token (``_token.py``), loads the
filter registry, binds the API listener, and runs everything in one anyio task
group, which it owns:

* the control plane's serving certificate (``_serving.py``, from its own CA): the API
  and xDS are served over TLS with it, renewed at half-life;
* the resource API (``controlplane/api``) on ``api_bind:api_port`` (HTTPS), with the
  certificate authority's endpoints (``controlplane/ca``, opened or created in
  ``<data-dir>/ca`` before anything listens);
* the extra services passed in ``services`` (the xDS server and the service
  registry hook in here, see :data:`ControlPlaneService`), each started with
  ``tg.start`` so its start-up errors surface before we report ready;
* a signal watcher: SIGTERM or SIGINT cancels the group; the store is closed
  on the way out, whatever ended the run.

``task_status.started(...)`` reports a :class:`RunningControlPlane` (the bound
API port, useful with port 0, and the token) once the API listens.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc

from plait.plugins import load_filter_types
from plait.sdk import DEFAULT_TRUST_DOMAIN, FilterSpec

from ._modules import ModuleStore, config_only
from ._serving import ServingIdentity
from ._token import ensure_token
from .api import CAEndpoints, RegistryView, ResourceAPI, serve_api
from .ca import Provided, open_ca
from .store import SqliteStore, Store

__all__ = [
    "ControlPlaneContext",
    "ControlPlaneOptions",
    "ControlPlaneService",
    "RunningControlPlane",
    "run_control_plane",
]

log = logging.getLogger(__name__)

DB_FILE = "plait.db"


@dataclass
class ControlPlaneOptions:
    data_dir: Path
    api_bind: str = "127.0.0.1"
    api_port: int = 15014
    xds_bind: str = "127.0.0.1"
    xds_port: int = 15012
    ca: bool = True
    """Run the certificate authority (``<data-dir>/ca``, docs/identity.md)."""
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    cert_ttl: float = 3600.0
    """Lifetime of workload certificates, seconds (at least 60)."""
    ca_files: Provided | None = None
    """Operator-provided root/intermediate, imported at the first start."""
    ca_clock: Callable[[], datetime] | None = None
    """The CA's clock (tests move it); default the system clock."""
    xds_plaintext_port: int | None = None
    """A second, plaintext xDS port for proxyless gRPC clients without certificates
    (``None``: none; 0: any free port)."""
    xds_max_connection_age: float = 1800.0
    """Seconds an xDS connection lives before the server asks the client to reconnect
    (Istio's default, 30 min); ``connection_age_options`` in ``xds/_server.py``."""


@dataclass
class ControlPlaneContext:
    """What the control plane's services share; handed to every :data:`ControlPlaneService`."""

    options: ControlPlaneOptions
    store: Store
    filter_types: Any  # Mapping[str, FilterSpec[Any]] (plait.plugins.FilterTypes)
    api: ResourceAPI
    extras: dict[str, Any] = field(default_factory=dict)


class ControlPlaneService(Protocol):
    """``async def service(ctx, *, task_status)``: runs until cancelled.

    It calls ``task_status.started()`` once it serves (start-up errors before that stop
    the control plane). A registry sets ``ctx.api.registry`` before that so Workload
    reads carry its status.
    """

    async def __call__(
        self, ctx: ControlPlaneContext, *, task_status: anyio.abc.TaskStatus[Any]
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningControlPlane:
    api_port: int
    token: str
    data_dir: Path
    context: ControlPlaneContext
    ca_bundle: Path | None = None
    """The roots that verify the API and xDS ports (``None``: no CA, plaintext ports)."""


async def run_control_plane(
    opts: ControlPlaneOptions,
    *,
    services: Sequence[ControlPlaneService] = (),
    registry: RegistryView | None = None,
    filter_types: Any = None,
    handle_signals: bool = True,
    extras: dict[str, Any] | None = None,
    task_status: anyio.abc.TaskStatus[RunningControlPlane] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run until SIGTERM/SIGINT or cancellation.

    Args:
        opts: data directory, bind addresses and ports.
        services: extra services to run in the same task group (xDS server, registry).
        registry: what Workload status and ``plait check`` read (may also be set by a service).
        filter_types: the filter registry; default ``plait.plugins.load_filter_types()``.
        handle_signals: stop on SIGTERM/SIGINT (only possible in the main thread).
        extras: settings for the services (``ctx.extras``), e.g. ``workload_grace``.

    Raises:
        TokenError: the admin token file is unsafe (group/world readable).
        OSError: the data directory or a port cannot be used.
    """
    data_dir = Path(opts.data_dir).expanduser()
    token = ensure_token(data_dir)
    # the wasm type checks its config here but never loads a module (_modules.py)
    types: dict[str, FilterSpec[Any]] = config_only(
        filter_types if filter_types is not None else load_filter_types()
    )
    db = data_dir / DB_FILE
    # Mode 0600 from the start: SQLite gives its -wal/-shm files the database file's mode.
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(db, 0o600)
    ca = (
        open_ca(data_dir, trust_domain=opts.trust_domain, leaf_ttl=opts.cert_ttl,
                provided=opts.ca_files, clock=opts.ca_clock)
        if opts.ca else None
    )  # fmt: skip
    store = SqliteStore(db)
    try:
        api = ResourceAPI(store, types, token, registry, CAEndpoints(ca) if ca else None,
                          modules=ModuleStore(data_dir / "modules"))  # fmt: skip
        ctx = ControlPlaneContext(
            options=opts, store=store, filter_types=types, api=api, extras=dict(extras or {})
        )
        serving = ServingIdentity(ca, data_dir, (opts.api_bind, opts.xds_bind)) if ca else None
        ctx.extras["serving"] = serving
        try:
            listener = await anyio.create_tcp_listener(
                local_host=opts.api_bind, local_port=opts.api_port
            )
        except OSError as exc:
            where = f"{opts.api_bind}:{opts.api_port}"
            raise OSError(exc.errno, f"API cannot listen on {where}: {exc.strerror}") from exc
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with listener, anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
            if serving is not None:
                await tg.start(serving.run)
            # ---- extra services (the lead adds the xDS server on opts.xds_bind:xds_port and
            # ---- the service registry here, or passes them in `services`) -------------------
            for service in services:
                await tg.start(service, ctx)
            tg.start_soon(serve_api, listener, api, serving.api_context() if serving else None)
            log.info("plait control plane: API on %s://%s:%d (admin token in %s), store %s",
                     "https" if serving else "http", opts.api_bind, port,
                     data_dir / "admin-token", store.path)  # fmt: skip
            bundle = serving.bundle_file if serving else None
            task_status.started(
                RunningControlPlane(
                    api_port=port, token=token, data_dir=data_dir, context=ctx, ca_bundle=bundle
                )
            )
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
            if ca is not None:
                ca.ca.close()
    log.info("plait control plane: stopped")


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("plait control plane: %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
