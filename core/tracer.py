"""What the data path asks of the sidecar's tracer.

``tracing.py`` implements it on the OpenTelemetry SDK, and the runtime imports
that module only when a config turns tracing on: a sidecar that does not trace
loads no OpenTelemetry (about 8 MB of memory per process, measured here).
"""

from __future__ import annotations

from typing import Any, Protocol

from plait.sdk import StreamContext

from .config._model import TracingConfig
from .trace_context import Parent

__all__ = ["Tracer"]


class Tracer(Protocol):
    config: TracingConfig
    ratio: float
    """The probability of sampling a request that carries no caller's decision."""

    def span(
        self, ctx: StreamContext, inbound: bool, listener: str, parent: Parent | None
    ) -> Any: ...

    def end(
        self,
        span: Any,
        ctx: StreamContext,
        attempts: int,
        inbound: bool,
        identity: str | None,
        peer: str | None,
    ) -> None: ...

    def close(self) -> None: ...

    def close_later(self) -> None: ...
