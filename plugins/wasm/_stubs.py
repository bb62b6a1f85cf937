"""Host functions of features this host does not provide yet, with neutral results.

Modules import these whether or not they use them, and SDKs react to a status
they do not expect by aborting (Rust panics, AssemblyScript calls
``proc_exit``), so each answers what a host with the feature would answer in
a quiet moment:

* timers: ``proxy_set_tick_period_milliseconds`` is accepted (no tick comes);
* metrics: defined, incremented, recorded and read back in the instance's
  memory (not exported to ``/metrics``);
* shared data: a key-value store with compare-and-swap, local to the instance;
  shared queues: registered, always empty;
* HTTP and gRPC callouts: ``INTERNAL_FAILURE`` (what the SDKs report to the
  filter as a failed dispatch); foreign functions: ``NOT_FOUND``;
* the v0.1.0 names: ``proxy_get_configuration`` reads the plugin configuration,
  ``proxy_continue_request``/``response`` resume the stream, the rest are no-ops.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._abi import Status
from ._memory import GuestMemory

__all__ = ["StubCalls"]


class StubCalls:
    """Mixed into the VM, which sets these attributes."""

    mem: GuestMemory
    log: logging.Logger
    metrics: dict[int, tuple[bytes, int]]
    shared: dict[bytes, tuple[bytes, int]]

    def _unsupported(self, what: str) -> int:
        self.log.warning("%s is not supported by plait's wasm host yet", what)
        return Status.INTERNAL_FAILURE

    # -- time ------------------------------------------------------------------------------

    def proxy_set_tick_period_milliseconds(self, caller: Any, period: int) -> int:
        return Status.OK

    def proxy_get_current_time_nanoseconds(self, caller: Any, out: int) -> int:
        self.mem.put_u64(caller, out, time.time_ns())
        return Status.OK

    def proxy_done(self, caller: Any) -> int:
        return Status.OK

    # -- callouts --------------------------------------------------------------------------

    def proxy_http_call(self, caller: Any, *args: int) -> int:
        return self._unsupported("proxy_http_call")

    def proxy_grpc_call(self, caller: Any, *args: int) -> int:
        return self._unsupported("proxy_grpc_call")

    def proxy_grpc_stream(self, caller: Any, *args: int) -> int:
        return self._unsupported("proxy_grpc_stream")

    def proxy_grpc_send(self, caller: Any, *args: int) -> int:
        return Status.NOT_FOUND

    def proxy_grpc_cancel(self, caller: Any, call: int) -> int:
        return Status.NOT_FOUND

    def proxy_grpc_close(self, caller: Any, call: int) -> int:
        return Status.NOT_FOUND

    def proxy_get_status(self, caller: Any, code_out: int, msg_out: int, size_out: int) -> int:
        self.mem.put_u32(caller, code_out, 0)
        return self.mem.give(caller, b"", msg_out, size_out)

    def proxy_call_foreign_function(self, caller: Any, *args: int) -> int:
        return Status.NOT_FOUND

    # -- metrics ---------------------------------------------------------------------------

    def proxy_define_metric(self, caller: Any, kind: int, name: int, size: int, out: int) -> int:
        key = self.mem.read(caller, name, size)
        found = next((i for i, (n, _) in self.metrics.items() if n == key), None)
        metric_id = found if found is not None else len(self.metrics) + 1
        self.metrics.setdefault(metric_id, (key, 0))
        self.mem.put_u32(caller, out, metric_id)
        return Status.OK

    def proxy_increment_metric(self, caller: Any, metric_id: int, delta: int) -> int:
        if metric_id not in self.metrics:
            return Status.NOT_FOUND
        name, value = self.metrics[metric_id]
        self.metrics[metric_id] = (name, value + delta)
        return Status.OK

    def proxy_record_metric(self, caller: Any, metric_id: int, value: int) -> int:
        if metric_id not in self.metrics:
            return Status.NOT_FOUND
        self.metrics[metric_id] = (self.metrics[metric_id][0], value)
        return Status.OK

    def proxy_get_metric(self, caller: Any, metric_id: int, out: int) -> int:
        if metric_id not in self.metrics:
            return Status.NOT_FOUND
        self.mem.put_u64(caller, out, self.metrics[metric_id][1])
        return Status.OK

    # -- shared data and queues ------------------------------------------------------------

    def proxy_set_shared_data(
        self, caller: Any, key: int, key_size: int, value: int, size: int, cas: int
    ) -> int:
        k = self.mem.read(caller, key, key_size)
        current = self.shared.get(k)
        cas &= 0xFFFFFFFF
        if cas and current is not None and current[1] != cas:
            return Status.CAS_MISMATCH
        version = (current[1] if current is not None else 0) + 1
        self.shared[k] = (self.mem.read(caller, value, size), version)
        return Status.OK

    def proxy_get_shared_data(
        self, caller: Any, key: int, key_size: int, value_out: int, size_out: int, cas_out: int
    ) -> int:
        found = self.shared.get(self.mem.read(caller, key, key_size))
        if found is None:
            return Status.NOT_FOUND
        self.mem.put_u32(caller, cas_out, found[1])
        return self.mem.give(caller, found[0], value_out, size_out)

    def proxy_register_shared_queue(self, caller: Any, name: int, size: int, out: int) -> int:
        self.mem.put_u32(caller, out, 1)
        return Status.OK

    def proxy_resolve_shared_queue(self, caller: Any, *args: int) -> int:
        return Status.NOT_FOUND

    def proxy_enqueue_shared_queue(self, caller: Any, queue: int, value: int, size: int) -> int:
        return Status.NOT_FOUND

    def proxy_dequeue_shared_queue(self, caller: Any, queue: int, out: int, size: int) -> int:
        return Status.EMPTY

    # -- v0.1.0 names and Emscripten -------------------------------------------------------

    def proxy_clear_route_cache(self, caller: Any) -> int:
        return Status.OK

    def pthread_equal(self, caller: Any, a: int, b: int) -> int:
        return int(a == b)

    def emscripten_notify_memory_growth(self, caller: Any, index: int) -> None:
        return None
