"""Per-stream and per-connection state handed to filters.

One :class:`StreamContext` is created per request. Filters keep private state
in its :class:`Stash` under a typed :class:`StashKey` (the pytest ``stash``
pattern), never in a ``dict[str, Any]`` bag: two filters can never collide on a
key, and ``mypy`` knows what each slot holds. Values in ``ctx.stash`` live for
the stream; values in ``ctx.connection.stash`` live for the connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast

from ._headers import Headers

if TYPE_CHECKING:
    from ._upstream import UpstreamCluster

__all__ = [
    "ConnectionContext",
    "PeerIdentity",
    "RequestHead",
    "ResponseHead",
    "Stash",
    "StashKey",
    "StreamContext",
]

_monotonic: Final = time.monotonic  # compiled: a C static, not a module attribute lookup per call

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A typed key into a :class:`Stash`. Create one per module, at import time."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """Typed storage: ``stash[key] = value`` where ``key: StashKey[T]``, ``value: T``."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._data[key])

    def get(self, key: StashKey[T], default: D) -> T | D:
        return cast("T | D", self._data.get(key, default))

    def setdefault(self, key: StashKey[T], default: T) -> T:
        try:
            return self[key]
        except KeyError:
            self[key] = default
            return default

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._data[key]

    def __contains__(self, key: StashKey[T]) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """The verified identity of a TLS peer (SPIFFE ID when the peer presents one)."""

    spiffe_id: str | None
    subject: str = ""

    @property
    def namespace(self) -> str | None:
        parts = (self.spiffe_id or "").split("/")
        return parts[parts.index("ns") + 1] if "ns" in parts[:-1] else None

    @property
    def service_account(self) -> str | None:
        parts = (self.spiffe_id or "").split("/")
        return parts[parts.index("sa") + 1] if "sa" in parts[:-1] else None


@dataclass(slots=True, kw_only=True)
class ConnectionContext:
    """Facts about the downstream connection, read once when it is accepted."""

    peer_address: tuple[str, int]
    local_address: tuple[str, int]
    listener: str = ""
    tls: bool = False
    alpn: str | None = None
    sni: str | None = None
    peer_identity: PeerIdentity | None = None
    stash: Stash = field(default_factory=Stash)


@dataclass(slots=True, kw_only=True)
class RequestHead:
    """A request head, the same for HTTP/1.1 and HTTP/2. Filters may mutate it."""

    method: str
    path: str
    """The request target in origin form (``/a/b?q=1``)."""
    authority: str = ""
    scheme: str = "http"
    headers: Headers = field(default_factory=Headers)
    http_version: str = "1.1"

    # An explicit __init__ (dataclass keeps it): the generated one would run interpreted
    # even in the compiled build, and one of these is made per request.
    def __init__(
        self,
        *,
        method: str,
        path: str,
        authority: str = "",
        scheme: str = "http",
        headers: Headers | None = None,
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.headers = Headers() if headers is None else headers
        self.http_version = http_version

    @property
    def path_only(self) -> str:
        """The path without the query string."""
        i = self.path.find("?")
        return self.path if i < 0 else self.path[:i]


@dataclass(slots=True, kw_only=True)
class ResponseHead:
    """A response head. Filters may mutate it."""

    status: int
    headers: Headers = field(default_factory=Headers)
    reason: str = ""

    # An explicit __init__ (dataclass keeps it): the generated one would run interpreted
    # even in the compiled build, and one of these is made per request.
    def __init__(self, *, status: int, headers: Headers | None = None, reason: str = "") -> None:
        self.status = status
        self.headers = Headers() if headers is None else headers
        self.reason = reason


class StreamContext:
    """Everything the proxy knows about one request/response exchange.

    Attributes set by the core as the stream progresses:
      * ``request`` when the request head has arrived;
      * ``route_name``/``cluster`` when the router has chosen;
      * ``response`` when a response head (upstream or local) exists;
      * ``failure_reason`` when the mesh itself failed the request.

    A plain slotted class rather than a dataclass: one is made per request, and
    the stash is created only when a filter first uses it.
    """

    __slots__ = (
        "_stash",
        "cluster",
        "connection",
        "failure_reason",
        "request",
        "response",
        "route_name",
        "snapshot_version",
        "started_at",
        "stream_id",
        "upstream_address",
        "upstream_cluster",
    )

    def __init__(
        self,
        *,
        connection: ConnectionContext,
        request: RequestHead,
        stream_id: int = 0,
        snapshot_version: str = "",
        started_at: float | None = None,
    ) -> None:
        self.connection = connection
        self.request = request
        self.stream_id = stream_id
        self.snapshot_version = snapshot_version
        self.started_at = _monotonic() if started_at is None else started_at
        self.response: ResponseHead | None = None
        self.route_name: str | None = None
        self.cluster: str | None = None
        """The backend (cluster) the request goes to; a split filter or the router sets it."""
        self.upstream_address: str | None = None
        """The endpoint (``address:port``) of the latest upstream attempt."""
        self.upstream_cluster: UpstreamCluster | None = None
        """The chosen cluster's shared state; set by the core before ``around_upstream``."""
        self.failure_reason: str | None = None
        self._stash: Stash | None = None

    @property
    def stash(self) -> Stash:
        """Typed per-stream storage for filters (``ctx.stash[KEY] = value``)."""
        if self._stash is None:
            self._stash = Stash()
        return self._stash

    def __repr__(self) -> str:
        return (
            f"StreamContext(stream_id={self.stream_id}, request={self.request.method} "
            f"{self.request.path}, route={self.route_name}, cluster={self.cluster})"
        )
