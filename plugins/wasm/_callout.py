"""HTTP callouts (``proxy_http_call``): what a module dispatched, how it runs, how it answers.

``proxy_http_call`` checks its arguments while the guest waits (:func:`make_call`):
the upstream must name a cluster of the sidecar's active config (:func:`resolve`:
the name ``/config_dump`` lists, ``NAME.NAMESPACE:PORT``, or a prefix of it that
names one cluster: ``NAME.NAMESPACE`` or ``NAME``), the headers must carry
``:method``, ``:path`` and ``:authority``; otherwise the call is refused with
``BAD_ARGUMENT``, as Envoy refuses an unknown cluster. An accepted call gets a
token and waits in the instance's outbox until the code that ran the guest
callback starts it: in the stream that paused for it (``_waiting.py``), else as
a task of the sidecar's task group (:func:`run_in_background`).

:func:`perform` sends the request through the sidecar's upstream pools
(:mod:`plait.sdk.mesh`) within the call's timeout; :func:`deliver` calls
``proxy_on_http_call_response(root, token, headers, body_size, trailers)`` with
the response readable as ``HTTP_CALL_RESPONSE_HEADERS``/``_TRAILERS`` (the
headers with ``:status`` first) and ``HTTP_CALL_RESPONSE_BODY``. A failed or
timed-out call is answered with 0 headers, 0 body bytes and 0 trailers (as Envoy
does).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from plait.sdk import Headers, PlaitError, RequestHead, mesh
from plait.sdk.mesh import MeshResponse

from ._abi import Status, decode_pairs
from ._state import StreamState

if TYPE_CHECKING:
    from ._vm import WasmVM

__all__ = ["Callout", "deliver", "make_call", "perform", "resolve", "run_in_background"]

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT: Final = 5.0
"""Seconds a call with a timeout of 0 may take."""


@dataclass(slots=True)
class Callout:
    token: int
    cluster: str
    head: RequestHead
    body: bytes
    trailers: Headers | None
    timeout: float
    stream: StreamState | None
    """The stream whose callback dispatched the call (``None``: the root context's)."""


def resolve(upstream: str, names: list[str]) -> str | None:
    """The cluster ``upstream`` names: exactly, or as ``NAME.NAMESPACE`` or ``NAME`` of
    exactly one cluster."""
    if upstream in names:
        return upstream
    found = [n for n in names if n.partition(":")[0] == upstream]
    if not found:
        found = [n for n in names if n.partition(":")[0].partition(".")[0] == upstream]
    return found[0] if len(found) == 1 else None


def make_call(
    token: int,
    upstream: bytes,
    headers: bytes,
    body: bytes,
    trailers: bytes,
    timeout_ms: int,
    stream: StreamState | None,
) -> Callout | int:
    """The call the arguments describe, or the ``Status`` refusing it."""
    host = mesh.current()
    if host is None:
        return Status.INTERNAL_FAILURE  # no sidecar runs in this process
    cluster = resolve(upstream.decode("utf-8", "replace"), list(host.cluster_names()))
    if cluster is None:
        return Status.BAD_ARGUMENT
    try:
        pairs = decode_pairs(headers)
        extra = decode_pairs(trailers) if trailers else []
    except ValueError:
        return Status.SERIALIZATION_FAILURE
    pseudo: dict[bytes, bytes] = {}
    regular = Headers()
    for k, v in pairs:
        if any(c in v for c in b"\r\n\0"):
            return Status.BAD_ARGUMENT
        if k.startswith(b":"):
            pseudo[k.lower()] = v
        else:
            regular.add(k.lower(), v)
    method, path, authority = (pseudo.get(k) for k in (b":method", b":path", b":authority"))
    if not method or not path or not authority:
        return Status.BAD_ARGUMENT
    head = RequestHead(
        method=method.decode("latin-1"),
        path=path.decode("latin-1"),
        authority=authority.decode("latin-1"),
        scheme=pseudo.get(b":scheme", b"http").decode("latin-1"),
        headers=regular,
    )
    if "host" not in regular:
        regular.add("host", head.authority)
    tail = Headers([(k.lower(), v) for k, v in extra]) if extra else None
    seconds = timeout_ms / 1000 if timeout_ms > 0 else DEFAULT_TIMEOUT
    return Callout(token, cluster, head, body, tail, seconds, stream)


async def perform(call: Callout) -> MeshResponse | None:
    """The call's response, or ``None`` when it failed or timed out."""
    host = mesh.current()
    if host is None:
        return None
    try:
        with anyio.fail_after(call.timeout):
            return await host.request(call.cluster, call.head, call.body, call.trailers)
    except TimeoutError:
        log.info("http call %d to %s timed out after %ss", call.token, call.cluster, call.timeout)
    except PlaitError as exc:
        log.info("http call %d to %s failed: %s", call.token, call.cluster, exc)
    except Exception:  # a failed callout never takes its stream or the sidecar down
        log.exception("http call %d to %s failed", call.token, call.cluster)
    return None


def deliver(vm: WasmVM, call: Callout, response: MeshResponse | None) -> None:
    """``proxy_on_http_call_response`` for ``call`` (raises ``GuestFailure``)."""
    if vm.broken is not None:
        return
    vm.callout = response
    try:
        if response is None:
            vm.call("proxy_on_http_call_response", vm.root, vm.root.id, call.token, 0, 0, 0)
        else:
            trailers = len(response.trailers) if response.trailers is not None else 0
            n = len(response.headers) + 1
            args = (call.token, n, len(response.body), trailers)
            vm.call("proxy_on_http_call_response", vm.root, vm.root.id, *args)
    finally:
        vm.callout = None


def run_in_background(vm: WasmVM, calls: list[Callout]) -> None:
    """Start ``calls`` as tasks of the sidecar's task group; each delivers its response
    to ``vm`` unless the instance was dropped meanwhile (a failure in the module's
    callback marks the instance broken and is logged)."""
    host = mesh.current()
    ref = weakref.ref(vm)
    for call in calls:
        if host is None:
            continue

        async def run(call: Callout = call) -> None:
            response = await perform(call)
            live = ref()
            if live is None:
                return
            try:
                deliver(live, call, response)
            except Exception as exc:  # GuestFailure: the instance is broken
                log.error("wasm filter %s failed: %s", live.info.name, exc)

        host.start_soon(run, name=f"wasm http call {call.token}")
