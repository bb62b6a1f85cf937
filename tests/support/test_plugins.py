"""Filters used only by the end-to-end tests (loaded with PLAIT_PLUGINS=test_plugins).

``test-raise``     raises in the hook named by ``hook`` (fail-closed → 500).
``test-complete``  appends one line per ``on_stream_complete`` to ``path``.
``test-slow``      an async request-headers hook that sleeps ``seconds``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from plait.plugins import hookimpl
from plait.sdk import (
    ConfigError,
    Continue,
    FilterRegistry,
    FilterResult,
    FilterSpec,
    Headers,
    PassThroughFilter,
    StreamContext,
)


@dataclass(frozen=True)
class RaiseConfig:
    hook: str


class Raise(PassThroughFilter):
    def __init__(self, config: RaiseConfig) -> None:
        self.config = config

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        if self.config.hook == "request" and ctx.request.path.startswith("/boom"):
            raise RuntimeError("boom (request)")
        return None

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        if self.config.hook == "response" and ctx.request.path.startswith("/boom"):
            raise RuntimeError("boom (response)")
        return None


def _raise_config(raw: Mapping[str, Any]) -> RaiseConfig:
    hook = raw.get("hook", "request")
    if hook not in ("request", "response"):
        raise ConfigError(f"expected 'request' or 'response', got {hook!r}", field="hook")
    return RaiseConfig(hook)


@dataclass(frozen=True)
class CompleteConfig:
    path: str


class Complete(PassThroughFilter):
    def __init__(self, config: CompleteConfig) -> None:
        self.config = config

    calls = 0

    def on_stream_complete(self, ctx: StreamContext) -> None:
        self.calls += 1
        status = ctx.response.status if ctx.response is not None else 0
        line = f"{os.getpid()} {self.calls} {ctx.request.path} {status}\n"
        with open(self.config.path, "a") as f:
            f.write(line)


def _complete_config(raw: Mapping[str, Any]) -> CompleteConfig:
    path = raw.get("path")
    if not isinstance(path, str):
        raise ConfigError("expected a file path", field="path")
    return CompleteConfig(path)


@dataclass(frozen=True)
class SlowConfig:
    seconds: float


class Slow(PassThroughFilter):
    def __init__(self, config: SlowConfig) -> None:
        self.config = config

    async def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        await anyio.sleep(self.config.seconds)
        headers.set("x-slow", "1")
        return None


class Stretch(PassThroughFilter):
    """Doubles every body chunk in both directions as it streams (the length changes)."""

    def on_request_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        return Continue(data=chunk * 2)

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        return Continue(data=chunk * 2)


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(FilterSpec(name="test-stretch", make=Stretch))
    registry.register(FilterSpec(name="test-raise", make=Raise, parse_config=_raise_config))
    registry.register(
        FilterSpec(name="test-complete", make=Complete, parse_config=_complete_config)
    )
    registry.register(
        FilterSpec(
            name="test-slow",
            make=Slow,
            parse_config=lambda raw: SlowConfig(float(raw.get("seconds", 0.1))),
        )
    )
