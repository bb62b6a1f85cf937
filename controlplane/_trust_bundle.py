"""The trust bundle over SDS: the CA's current roots as the xDS Secret ``ROOTCA``.

Theory of operation: :class:`TrustBundleSource` wraps the mesh's :class:`XdsSource` and adds
one resource type, ``envoy.extensions.transport_sockets.tls.v3.Secret``. Asked for it, it
answers the Secret ``ROOTCA`` (Istio's name, ``wire.SDS_ROOTS``) whose
``validation_context.trusted_ca`` holds the CA's bundle inline as PEM; every node gets the same
one, since the bundle is mesh-wide. Every other type goes to the wrapped source.

The bundle changes when a root rotation starts (new root added) and when it ends (old root
dropped, decided lazily by the CA once no leaf chains to it). :meth:`TrustBundleSource.run`
asks the CA for its bundle every ``poll`` seconds, which is also what lets the CA notice that
a rotation is over, and bumps the revision when the bytes change. The revision is the wrapped
source's revision plus the number of bundle changes, so it only grows and grows with either;
the ADS server then recomputes each stream's subscribed types and, since its content hash of
the other types did not move, pushes only the new Secret. A root rotation thereby reaches
every connected sidecar within ``poll`` seconds plus the server's debounce, whatever the
lifetime of the sidecars' leaves.

The Secret message is built once per bundle and shared by every stream (the server caches
serializations by object identity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.extensions.transport_sockets.tls.v3 import (  # type: ignore[import-untyped]
    common_pb2,
    secret_pb2,
)

from plait.core.xds.wire import SDS_ROOTS, SECRET

from .xds import NodeInfo, XdsSource

__all__ = ["DEFAULT_POLL", "TrustBundleSource", "bundle_secret"]

DEFAULT_POLL = 1.0


def bundle_secret(bundle_pem: bytes) -> Any:
    """The Secret ``ROOTCA`` carrying ``bundle_pem`` (PEM roots) as its trusted CA."""
    return secret_pb2.Secret(
        name=SDS_ROOTS,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle_pem)
        ),
    )


class TrustBundleSource:
    """An :class:`XdsSource`: ``inner``'s resources plus the SDS trust bundle."""

    def __init__(
        self, inner: XdsSource, bundle: Callable[[], bytes], *, poll: float = DEFAULT_POLL
    ) -> None:
        self.inner = inner
        self.bundle = bundle
        self.poll = poll
        self._pem = bundle()
        self._secret = bundle_secret(self._pem)
        self._changes = 0
        self._changed = anyio.Event()

    @property
    def revision(self) -> int:
        return self.inner.revision + self._changes

    async def wait_for(self, revision: int) -> int:
        while self.revision <= revision:
            await self._changed.wait()
        return self.revision

    def resources(
        self, node: NodeInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Any]:
        if type_url != SECRET:
            return self.inner.resources(node, type_url, names)
        if names is not None and SDS_ROOTS not in names:
            return {}  # a node asking for its own leaf over SDS gets it from the CA API
        return {SDS_ROOTS: self._secret}

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the wrapped source and the CA's bundle until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow_inner)
            task_status.started()
            while True:
                await anyio.sleep(self.poll)
                self.check()

    def check(self) -> bool:
        """Read the CA's bundle now; whether it changed (and was published)."""
        pem = self.bundle()
        if pem == self._pem:
            return False
        self._pem, self._secret = pem, bundle_secret(pem)
        self._changes += 1
        self._notify()
        return True

    async def _follow_inner(self) -> None:
        seen = self.inner.revision
        while True:
            seen = await self.inner.wait_for(seen)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
