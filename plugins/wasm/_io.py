"""Host functions that reach past one stream: callouts, timers, metrics, shared state.

Mixed into the VM ahead of the stream's host functions (``_hostcalls.py``):

* ``proxy_http_call`` validates and records the call (``_callout.py``); the code
  that ran the callback starts it. During ``proxy_on_http_call_response`` the
  response is map ``HTTP_CALL_RESPONSE_HEADERS`` (``:status`` first, which
  cannot be changed) and
  ``_TRAILERS``, buffer ``HTTP_CALL_RESPONSE_BODY``, and ``proxy_get_status``
  answers its status (0 and ``"failed"`` for a failed call).
* ``proxy_set_tick_period_milliseconds`` sets the instance's period (0 stops)
  and tells the plugin, which runs the ticks (``_ticker.py``).
* metrics: ``_metrics.py``; shared data and queues: ``_shared.py``
  (``proxy_on_queue_ready`` is delivered by the ticker's task, never inside the
  enqueuing callback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plait.sdk import Headers
from plait.sdk.mesh import MeshResponse

from ._abi import BufferType, MapType, Status, u32
from ._callout import Callout, make_call
from ._headermap import BadHeader, HeaderMap
from ._hostcalls import HostCalls
from ._memory import GuestMemory
from ._metrics import ModuleMetrics
from ._properties import PluginInfo
from ._shared import DATA, QUEUES
from ._state import RootState, StreamState

__all__ = ["CalloutMap", "IoCalls"]


class CalloutMap(HeaderMap):
    """A callout response's headers or trailers, ``:status`` first (changes to the other
    headers stay in the response the module is answered with)."""

    __slots__ = ("pseudo",)

    def __init__(self, kind: int, headers: Headers, pseudo: list[tuple[bytes, bytes]]) -> None:
        super().__init__(None, kind, headers)  # type: ignore[arg-type]
        self.pseudo = pseudo

    def _pseudo(self) -> list[tuple[bytes, bytes]]:
        return self.pseudo

    def _pseudo_value(self, key: bytes) -> bytes | None:
        return next((v for k, v in self.pseudo if k == key), None)

    def _set_pseudo(self, key: bytes, value: bytes) -> None:
        raise BadHeader("a callout's pseudo-headers cannot be changed")


class IoCalls(HostCalls):
    """Mixed into the VM, which sets these attributes."""

    mem: GuestMemory
    info: PluginInfo
    current: RootState | StreamState | None
    callout: MeshResponse | None
    outbox: list[Callout]
    next_token: int
    tick_period: float
    on_tick_period: Callable[[], None] | None
    module_metrics: ModuleMetrics
    ready_queues: list[int]

    # -- callouts --------------------------------------------------------------------------

    def proxy_http_call(
        self,
        caller: Any,
        upstream: int,
        upstream_size: int,
        headers: int,
        headers_size: int,
        body: int,
        body_size: int,
        trailers: int,
        trailers_size: int,
        timeout_ms: int,
        token_out: int,
    ) -> int:
        read = self.mem.read
        cur = self.current
        made = make_call(
            self.next_token,
            read(caller, upstream, upstream_size),
            read(caller, headers, headers_size),
            read(caller, body, body_size),
            read(caller, trailers, trailers_size),
            u32(timeout_ms),
            cur if type(cur) is StreamState else None,
        )
        if isinstance(made, int):
            return made
        self.next_token += 1
        self.outbox.append(made)
        self.mem.put_u32(caller, token_out, made.token)
        return Status.OK

    def proxy_get_status(self, caller: Any, code_out: int, msg_out: int, size_out: int) -> int:
        response = self.callout
        code = response.status if response is not None else 0
        self.mem.put_u32(caller, code_out, code)
        return self.mem.give(caller, b"" if code else b"failed", msg_out, size_out)

    def _map(self, kind: int) -> HeaderMap | None:
        if kind in (MapType.HTTP_CALL_RESPONSE_HEADERS, MapType.HTTP_CALL_RESPONSE_TRAILERS):
            response = self.callout
            if response is None:
                return None
            if kind == MapType.HTTP_CALL_RESPONSE_HEADERS:
                status = [(b":status", str(response.status).encode())]
                return CalloutMap(kind, response.headers, status)
            return CalloutMap(kind, response.trailers or Headers(), [])
        return super()._map(kind)

    def _buffer(self, kind: int) -> bytes | None:
        if kind == BufferType.HTTP_CALL_RESPONSE_BODY:
            return self.callout.body if self.callout is not None else None
        return super()._buffer(kind)

    # -- timers ----------------------------------------------------------------------------

    def proxy_set_tick_period_milliseconds(self, caller: Any, period: int) -> int:
        self.tick_period = u32(period) / 1000
        if self.on_tick_period is not None:
            self.on_tick_period()
        return Status.OK

    # -- metrics ---------------------------------------------------------------------------

    def proxy_define_metric(self, caller: Any, kind: int, name: int, size: int, out: int) -> int:
        metric_id = self.module_metrics.define(kind, self.mem.read(caller, name, size))
        if metric_id is None:
            return Status.BAD_ARGUMENT
        self.mem.put_u32(caller, out, metric_id)
        return Status.OK

    def proxy_increment_metric(self, caller: Any, metric_id: int, delta: int) -> int:
        return self.module_metrics.increment(metric_id, delta)

    def proxy_record_metric(self, caller: Any, metric_id: int, value: int) -> int:
        return self.module_metrics.record(metric_id, value)

    def proxy_get_metric(self, caller: Any, metric_id: int, out: int) -> int:
        if metric_id not in self.module_metrics.by_id:
            return Status.NOT_FOUND
        value = self.module_metrics.get(metric_id)
        if value is None:
            return Status.BAD_ARGUMENT
        self.mem.put_u64(caller, out, value)
        return Status.OK

    # -- shared data and queues ------------------------------------------------------------

    def proxy_set_shared_data(
        self, caller: Any, key: int, key_size: int, value: int, size: int, cas: int
    ) -> int:
        k = self.mem.read(caller, key, key_size)
        return DATA.set(k, self.mem.read(caller, value, size), u32(cas))

    def proxy_get_shared_data(
        self, caller: Any, key: int, key_size: int, value_out: int, size_out: int, cas_out: int
    ) -> int:
        found = DATA.get(self.mem.read(caller, key, key_size))
        if found is None:
            return Status.NOT_FOUND
        self.mem.put_u32(caller, cas_out, found[1])
        return self.mem.give(caller, found[0], value_out, size_out)

    def queue_ready(self, queue_id: int) -> None:
        """An item arrived in a queue this instance registered (delivered later)."""
        if queue_id not in self.ready_queues:
            self.ready_queues.append(queue_id)
        if self.on_tick_period is not None:
            self.on_tick_period()

    def proxy_register_shared_queue(self, caller: Any, name: int, size: int, out: int) -> int:
        vm_id = self.info.vm_id.encode()
        queue_id = QUEUES.register(vm_id, self.mem.read(caller, name, size), self.queue_ready)
        self.mem.put_u32(caller, out, queue_id)
        return Status.OK

    def proxy_resolve_shared_queue(
        self, caller: Any, vm_id: int, vm_id_size: int, name: int, size: int, out: int
    ) -> int:
        found = QUEUES.resolve(
            self.mem.read(caller, vm_id, vm_id_size), self.mem.read(caller, name, size)
        )
        if found is None:
            return Status.NOT_FOUND
        self.mem.put_u32(caller, out, found)
        return Status.OK

    def proxy_enqueue_shared_queue(self, caller: Any, queue: int, value: int, size: int) -> int:
        return QUEUES.enqueue(u32(queue), self.mem.read(caller, value, size))

    def proxy_dequeue_shared_queue(self, caller: Any, queue: int, out: int, size: int) -> int:
        item = QUEUES.dequeue(u32(queue))
        if isinstance(item, int):
            return item
        return self.mem.give(caller, item, out, size)
