"""Host functions of features this host does not provide yet, with neutral results.

Modules import these whether or not they use them, and SDKs react to a status
they do not expect by aborting (Rust panics, AssemblyScript calls
``proc_exit``), so each answers what a host with the feature would answer in
a quiet moment:

* gRPC callouts: ``INTERNAL_FAILURE`` (what the SDKs report to the filter as a
  failed dispatch); foreign functions: ``NOT_FOUND``;
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

    def _unsupported(self, what: str) -> int:
        self.log.warning("%s is not supported by plait's wasm host yet", what)
        return Status.INTERNAL_FAILURE

    # -- time ------------------------------------------------------------------------------

    def proxy_get_current_time_nanoseconds(self, caller: Any, out: int) -> int:
        self.mem.put_u64(caller, out, time.time_ns())
        return Status.OK

    def proxy_done(self, caller: Any) -> int:
        return Status.OK

    # -- callouts --------------------------------------------------------------------------

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

    def proxy_call_foreign_function(self, caller: Any, *args: int) -> int:
        return Status.NOT_FOUND

    # -- v0.1.0 names and Emscripten -------------------------------------------------------

    def proxy_clear_route_cache(self, caller: Any) -> int:
        return Status.OK

    def pthread_equal(self, caller: Any, a: int, b: int) -> int:
        return int(a == b)

    def emscripten_notify_memory_growth(self, caller: Any, index: int) -> None:
        return None
