"""``fault``: delay or abort a share of requests, to test how callers cope.

A request-phase filter (it runs before routing's upstream call, so an abort
never reaches the upstream; a delay holds the request before it is sent). Each
request draws independently: the delay with ``delay.percentage``, then the
abort with ``abort.percentage``. An abort answers ``httpStatus``, or a gRPC
trailers-only response (HTTP 200, ``grpc-status``) for ``grpcStatus``; either
way the failure reason is "fault injected" (``x-plait-reason`` and the access
log), so injected faults are counted in ``plait_requests{reason}``. A delayed
request that then succeeds is marked "fault delay injected".

Without a delay the filter is plain (synchronous), so the chain keeps its fast path.
"""

from __future__ import annotations

import random

import anyio

from plait.sdk import FilterResult, Headers, LocalReply, PassThroughFilter, StreamContext

from ._config import FaultConfig

__all__ = ["FAULT_REASON", "AbortFault", "Fault", "make_fault"]

FAULT_REASON = "fault injected"
_draw = random.random  # module-level so tests can replace it


def _reply(config: FaultConfig) -> LocalReply | None:
    abort = config.abort
    if abort is None or _draw() * 100 >= abort.percentage:
        return None
    if abort.grpc_status is not None:
        return LocalReply(
            200,
            headers=(
                ("content-type", "application/grpc"),
                ("grpc-status", str(abort.grpc_status)),
                ("grpc-message", FAULT_REASON),
            ),
            reason=FAULT_REASON,
        )
    assert abort.http_status is not None
    return LocalReply(abort.http_status, reason=FAULT_REASON)


def _applies(config: FaultConfig, headers: Headers) -> bool:
    return config.header is None or headers.get(config.header) is not None


class AbortFault(PassThroughFilter):
    """Aborts only: plain hooks."""

    __slots__ = ("_config",)

    def __init__(self, config: FaultConfig) -> None:
        self._config = config

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        return _reply(self._config) if _applies(self._config, headers) else None


class Fault(PassThroughFilter):
    """Delays (and maybe aborts): the head hook awaits."""

    __slots__ = ("_config",)

    def __init__(self, config: FaultConfig) -> None:
        self._config = config

    async def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        config = self._config
        if not _applies(config, headers):
            return None
        delay = config.delay
        if delay is not None and _draw() * 100 < delay.percentage:
            await anyio.sleep(delay.seconds)
            ctx.failure_reason = ctx.failure_reason or "fault delay injected"
        return _reply(config)


def make_fault(config: FaultConfig) -> PassThroughFilter:
    """The plain filter when there is no delay, so a chain of plain hooks stays fast."""
    return Fault(config) if config.delay is not None else AbortFault(config)
