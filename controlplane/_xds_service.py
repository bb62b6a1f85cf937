"""The control plane's xDS side as one service: translator source, registry and ADS server.

``xds_service(ctx, task_status)`` (a :data:`~plait.controlplane.server.ControlPlaneService`)
starts, in its own task group: the :class:`MeshSource` following the store (wrapped, when
the control plane runs a CA, in a :class:`TrustBundleSource` that adds the SDS trust bundle
``ROOTCA``), the :class:`Registry` (workload registration, ACK/NACK bookkeeping, grace-period
removal) and the :class:`AdsServer` on ``xds_bind:xds_port``. With a CA, that port requires a
client certificate from it and a :class:`NodeBinding` decides which node each certificate's
identity may be (``_node_auth.py``; refusals are counted with the CA's). It registers the
registry with the resource API before reporting started, so ``plait get
workloads`` and ``plait check`` see connection state from the first request.
"""

from __future__ import annotations

import errno
import logging
from functools import partial
from typing import Any

import anyio
import anyio.abc

from ._mesh import MeshSource
from ._node_auth import NodeBinding
from ._registry import Registry
from ._trust_bundle import DEFAULT_POLL, TrustBundleSource
from .server import ControlPlaneContext
from .xds import DEFAULT_OPTIONS, AdsServer, connection_age_options

__all__ = ["xds_service"]

log = logging.getLogger("plait.controlplane")


async def xds_service(
    ctx: ControlPlaneContext, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
) -> None:
    opts = ctx.options
    source = MeshSource(ctx.store, ctx.filter_types, trust_domain=opts.trust_domain)
    binding: NodeBinding | None = None
    if ctx.api.ca is not None:
        refusals = ctx.api.ca.service.refusals
        binding = NodeBinding(opts.trust_domain, lambda reason: refusals.update((reason,)))
        ctx.extras["node_binding"] = binding
    registry = Registry(
        ctx.store,
        ctx.api,
        grace=float(ctx.extras.get("workload_grace", 30.0)),
        health_interval=float(ctx.extras.get("health_interval", 5.0)),
        on_health=source.set_unhealthy,
        owners=binding.owners if binding is not None else None,
    )
    served: MeshSource | TrustBundleSource = source
    if ctx.api.ca is not None:
        served = TrustBundleSource(
            source,
            ctx.api.ca.service.ca.bundle_pem,
            poll=float(ctx.extras.get("bundle_poll", DEFAULT_POLL)),
        )
    serving = ctx.extras.get("serving")
    server = AdsServer(
        served,
        registry,
        debounce=float(ctx.extras.get("debounce", 0.1)),
        credentials=serving.grpc_credentials() if serving is not None else None,
        authorizer=binding,
        options=[*DEFAULT_OPTIONS, *connection_age_options(opts.xds_max_connection_age)],
    )
    async with anyio.create_task_group() as tg:
        await tg.start(source.run)
        if isinstance(served, TrustBundleSource):
            await tg.start(served.run)
        await tg.start(registry.run)  # node ids bound before the first stream
        try:
            port = await tg.start(
                partial(server.serve, plaintext_port=opts.xds_plaintext_port),
                opts.xds_bind,
                opts.xds_port,
            )
        except RuntimeError as exc:  # grpc says only that it could not bind, not why
            where = f"{opts.xds_bind}:{opts.xds_port}"
            raise OSError(
                errno.EADDRINUSE,
                f"xDS cannot listen on {where}: gRPC could not bind it "
                "(in use, or not an address of this host)",
            ) from exc
        ctx.api.registry = registry
        plain = server.plaintext_port
        ctx.extras.update(source=source, served=served, registry=registry, xds_port=port,
                          xds_plaintext_port=plain)  # fmt: skip
        log.info("plait control plane: xDS (ADS) on %s:%d (%s)", opts.xds_bind, port,
                 "mutual TLS" if serving is not None else "plaintext")  # fmt: skip
        if plain is not None:
            log.warning("plait control plane: plaintext xDS on %s:%d (--xds-plaintext-port): "
                        "config and the trust bundle travel unauthenticated there, to nodes that "
                        "claim no mesh identity",
                        opts.xds_bind, plain)  # fmt: skip
        task_status.started(port)
