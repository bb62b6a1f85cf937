"""HTTP/1.1 requests to a sidecar sent as HTTP/2: one endpoint's pair of pools.

Theory of operation. When a cluster's HTTP/1.1 requests go to an endpoint as HTTP/2
(``_manager.upgrades``: a mesh peer reached over mTLS), its pool is an
:class:`UpgradePool`: an HTTP/2 pool whose handshakes offer ALPN ``h2`` and ``http/1.1``,
and an HTTP/1.1 pool to the same endpoint, with the same identity checks.

* **Streams** come from the HTTP/2 pool while this sidecar has its certificate: a plait
  sidecar selects ``h2`` on any HTTP port, so the requests ready at once share one
  connection and leave in one write.
* **A peer that selects ``http/1.1``** (an mTLS server that is no plait sidecar) is not an
  error: that handshake's connection is closed, the request goes on the HTTP/1.1 pool, and
  so do the next ones for :data:`RETRY_H2_AFTER` seconds, after which one handshake asks
  again (the endpoint may have become a sidecar). The fallback is logged at info level.
* **Before this sidecar has a certificate** (auto mTLS connects in plaintext then), and
  for the ``Upgrade`` requests that must stay HTTP/1.1 (:attr:`UpgradePool.tunnel`), the
  HTTP/1.1 pool serves.

With an explicit ``h2UpgradePolicy: UPGRADE`` the pair serves too, the operator having
said the endpoints speak HTTP/2: its handshakes offer only ``h2`` (a peer that selects
``http/1.1`` is refused, as for an ``http2`` cluster), and a plaintext endpoint gets
prior-knowledge h2c; ``Upgrade`` requests still go on HTTP/1.1.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from ..config._model import Endpoint
from ._tls import Origination, UpstreamDowngrade
from .stream import UpstreamStream

if TYPE_CHECKING:
    from ._h1 import H1Pool
    from ._h2 import H2Pool

__all__ = ["RETRY_H2_AFTER", "UpgradePool"]

log = logging.getLogger(__name__)

RETRY_H2_AFTER: Final = 300.0
"""Seconds an endpoint that selected HTTP/1.1 is reached over HTTP/1.1 before the next try."""


class UpgradePool:
    """An endpoint's HTTP/2 pool and its HTTP/1.1 fallback; see the module docstring."""

    def __init__(self, h2: H2Pool, tunnel: H1Pool, origin: Origination | None) -> None:
        self.h2 = h2
        self.tunnel = tunnel
        """The HTTP/1.1 pool: ``Upgrade`` requests, and the fallback."""
        self.origin: Origination | None = origin
        self.endpoint: Endpoint = tunnel.endpoint
        self.key: str = tunnel.key
        self._h1_until = 0.0
        """Until this ``time.monotonic()``, the endpoint is reached over HTTP/1.1."""
        self._ready = False
        """The sidecar had its certificate at the last look."""

    def _h2_now(self) -> bool:
        if not self._ready:  # once the sidecar has a certificate it keeps one
            origin = self.origin
            if origin is not None and not origin.store.ready:
                return False
            self._ready = True
        return self._h1_until == 0.0 or time.monotonic() >= self._h1_until

    def take(self) -> UpstreamStream | None:
        if self._h2_now():
            return self.h2.take()
        return self.tunnel.take()

    async def open_stream(self, *, fresh: bool = False) -> UpstreamStream:
        if self._h2_now():
            try:
                stream = await self.h2.open_stream(fresh=fresh)
            except UpstreamDowngrade as err:
                if self._h1_until == 0.0 or time.monotonic() >= self._h1_until:
                    log.info("%s; HTTP/1.1 to %s for %ds", err, self.key, RETRY_H2_AFTER)
                self._h1_until = time.monotonic() + RETRY_H2_AFTER
            else:
                self._h1_until = 0.0
                return stream
        return await self.tunnel.open_stream(fresh=fresh)

    def close(self) -> None:
        self.h2.close()
        self.tunnel.close()
