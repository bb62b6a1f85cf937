"""The sidecar's services for extensions that act outside a stream's hooks.

A filter's hooks see one stream. Some extensions also need the sidecar itself:
a Proxy-Wasm module calls another mesh service (``proxy_http_call``) or asks
for a periodic tick. The sidecar process installs one :class:`MeshHost` while
it runs (:func:`install`); an extension reads it with :func:`current` when it
needs it (``None`` outside a running sidecar, e.g. in unit tests without one).

* :meth:`MeshHost.request` sends one request to a cluster by the name the
  sidecar's config gives it (the name ``/config_dump`` shows under
  ``clusters``), through the same upstream connection pools (and TLS origination)
  that the sidecar's own requests use, and returns the whole response. It raises
  :class:`~plait.sdk.UpstreamError` when the cluster is unknown or has no
  endpoint, the connection fails or the upstream resets the stream; the caller
  bounds it with its own timeout (cancellation resets the upstream stream).
* :meth:`MeshHost.start_soon` runs a background task in the sidecar's task
  group, so no task outlives the sidecar; the task itself decides when it ends.
  An extension made before the sidecar runs (a filter whose config is parsed at
  start-up) asks with :func:`when_running`, which calls it back once a host is
  installed (at once if one is).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from ._context import RequestHead
from ._headers import Headers

__all__ = ["MeshHost", "MeshResponse", "current", "install", "when_running"]


@dataclass(frozen=True, slots=True)
class MeshResponse:
    """A whole response of :meth:`MeshHost.request`."""

    status: int
    headers: Headers
    body: bytes
    trailers: Headers | None = None


class MeshHost(Protocol):
    """What the running sidecar offers extensions."""

    def cluster_names(self) -> Collection[str]:
        """The clusters of the active config."""
        ...

    async def request(
        self, cluster: str, head: RequestHead, body: bytes, trailers: Headers | None
    ) -> MeshResponse:
        """Send one request to ``cluster`` and read the whole response."""
        ...

    def filter_configs(self) -> Collection[object]:
        """The parsed configs (what ``parse_config`` returned) of every filter in the
        active config's chains: an extension's task finds out whether its filter is
        still loaded."""
        ...

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``fn`` as a task of the sidecar's task group."""
        ...


_current: list[MeshHost] = []
_waiting: list[Callable[[MeshHost], None]] = []


def install(host: MeshHost | None) -> None:
    """Make ``host`` the process's (``None``: the sidecar stopped), and call back what
    waited for one."""
    _current[:] = [] if host is None else [host]
    if host is not None:
        waiting, _waiting[:] = list(_waiting), []
        for fn in waiting:
            fn(host)


def when_running(fn: Callable[[MeshHost], None]) -> None:
    """Call ``fn(host)`` now if a sidecar runs in this process, else once one does."""
    if _current:
        fn(_current[0])
    else:
        _waiting.append(fn)


def current() -> MeshHost | None:
    """The running sidecar's services, if a sidecar runs in this process."""
    return _current[0] if _current else None
