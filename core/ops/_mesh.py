"""The sidecar's :class:`~plait.sdk.mesh.MeshHost`: requests by cluster name, background tasks.

An extension's request (a Proxy-Wasm ``proxy_http_call``) goes to a cluster of
the active snapshot by its name, as ``/config_dump`` lists it, and through the
same per-endpoint pools (``core/upstream``: keep-alive connections, HTTP/2
multiplexing, mTLS origination) as the sidecar's own requests: the endpoint is
the cluster's next pick, a warm connection is reused, and a reused keep-alive
connection that the upstream closed before answering is retried once on a fresh
one. The whole response (head, body, trailers) is read before it is returned; a
response body past :data:`MAX_BODY` resets the stream. The caller bounds the
wait; a cancelled request resets its upstream stream, so nothing is left open.

Background tasks run in the sidecar's task group (:meth:`SidecarMesh.start_soon`);
:meth:`SidecarMesh.filter_configs` lists the parsed filter configs of the active
snapshot's chains, so a task that serves a filter can tell when its filter was
unloaded (the old snapshot may stay in memory long after: its listeners and
snapshot refer to each other, and the start-up heap is frozen out of the
collector's sight).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, Final

from plait.sdk import (
    Headers,
    NoHealthyUpstream,
    RequestHead,
    UpstreamConnectError,
    UpstreamReset,
)
from plait.sdk.mesh import MeshResponse

from ..codec import DataReceived, InformationalReceived, ResponseReceived, TrailersReceived

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..runtime import Runtime
    from ..upstream.stream import UpstreamStream

__all__ = ["MAX_BODY", "SidecarMesh"]

MAX_BODY: Final = 16 * 1024 * 1024
"""The largest response body an extension's request reads (bytes)."""


class SidecarMesh:
    """Requests to the active snapshot's clusters; tasks in the sidecar's task group."""

    def __init__(self, runtime: Runtime, tg: TaskGroup) -> None:
        self.runtime = runtime
        self.tg = tg
        self._seen: object = None
        self._configs: tuple[object, ...] = ()

    def filter_configs(self) -> Collection[object]:
        snap = self.runtime.snapshot
        if snap is not self._seen:
            config = snap.config
            entries = [e for lis in config.listeners for e in lis.filters]
            entries += [e for t in config.routes.values() for r in t.rules for e in r.filters]
            self._configs = tuple(e.config for e in entries if e.config is not None)
            self._seen = snap
        return self._configs

    def cluster_names(self) -> Collection[str]:
        return tuple(self.runtime.snapshot.clusters)

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self.tg.start_soon(fn, name=name)

    async def request(
        self, cluster: str, head: RequestHead, body: bytes, trailers: Headers | None
    ) -> MeshResponse:
        crt = self.runtime.snapshot.clusters.get(cluster)
        if crt is None:
            raise NoHealthyUpstream(f"no cluster named {cluster!r}")
        pool = crt.pick()
        stream = pool.take()
        try:
            if stream is None:
                stream = await pool.open_stream()
            response = await _exchange(stream, head, body, trailers)
            if response is None and stream.reused:  # a stale keep-alive connection
                stream = await pool.open_stream(fresh=True)
                response = await _exchange(stream, head, body, trailers)
        except OSError as exc:
            raise UpstreamConnectError(f"{pool.key}: {exc}") from None
        if response is None:
            raise UpstreamReset(f"{pool.key} closed the stream before responding")
        return response


async def _exchange(
    stream: UpstreamStream, head: RequestHead, body: bytes, trailers: Headers | None
) -> MeshResponse | None:
    """One request on ``stream``; ``None`` (stream reset) when no response came."""
    complete = False
    try:
        if trailers is None:
            if body:
                head.headers.set("content-length", str(len(body)))
            stream.send_head(head, end_stream=True, body=body)
        else:
            head.headers.remove("content-length")
            stream.send_head(head, end_stream=False)
            if body:
                await stream.send_data(body, end_stream=False)
            stream.send_trailers(trailers)
        ev = await stream.read_event()
        while type(ev) is InformationalReceived:
            ev = await stream.read_event()
        if type(ev) is not ResponseReceived:
            return None
        chunks, size, end = [ev.body], len(ev.body), ev.end_stream
        status, headers = ev.head.status, ev.head.headers
        got_trailers: Headers | None = None
        while not end:
            nxt = await stream.read_event()
            if type(nxt) is DataReceived:
                chunks.append(nxt.data)
                size += len(nxt.data)
                end = nxt.end_stream
                if size > MAX_BODY:
                    raise UpstreamReset(f"response body larger than {MAX_BODY} bytes")
            elif type(nxt) is TrailersReceived:
                got_trailers, end = nxt.trailers, True
            else:
                raise UpstreamReset("upstream reset the stream during the response body")
        complete = True
        return MeshResponse(status, headers, b"".join(chunks), got_trailers)
    finally:
        if complete:
            stream.finish(True)
        else:
            stream.reset()
