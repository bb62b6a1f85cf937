"""``example-api-key``: answer 401 unless the request carries one of the configured keys.

A config parsed once per snapshot into a frozen object (errors name the field), a
local reply built once, and a filter that keeps no per-stream state
(``stream_independent``: one instance serves every stream).

    filters:
    - type: example-api-key
      config: {header: x-api-key, keys: [k-123, k-456]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plait.plugins import hookimpl
from plait.sdk import (
    ConfigError,
    FilterRegistry,
    FilterResult,
    FilterSpec,
    Headers,
    HttpFilter,
    LocalReply,
    StreamContext,
)


@dataclass(frozen=True)
class ApiKeyConfig:
    header: str
    keys: frozenset[str]
    reply: LocalReply


def parse(raw: Mapping[str, Any]) -> ApiKeyConfig:
    header = raw.get("header", "x-api-key")
    if not isinstance(header, str) or not header:
        raise ConfigError(f"expected a header name, got {header!r}", field="header")
    keys = raw.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"expected a non-empty list of strings, got {keys!r}", field="keys")
    reply = LocalReply(401, b"missing or unknown API key\n", reason="api key refused")
    return ApiKeyConfig(header.lower(), frozenset(keys), reply)


class ApiKey(HttpFilter):
    def __init__(self, config: ApiKeyConfig) -> None:
        self.config = config

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        if headers.get(self.config.header) in self.config.keys:
            return None
        return self.config.reply


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(
            name="example-api-key",
            make=ApiKey,
            parse_config=parse,
            description="answer 401 without a configured API key",
            stream_independent=True,
        )
    )
