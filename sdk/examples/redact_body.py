"""``example-redact``: replace configured words in text responses.

``Buffer`` from the response-headers hook makes the proxy collect the whole body
(up to the limit) before the data hook sees it, once, with ``end_stream=True``;
``Continue(data=...)`` replaces it and the proxy fixes the length. Other content
types stream through untouched.

    filters:
    - type: example-redact
      config: {words: [secret, password]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plait.plugins import hookimpl
from plait.sdk import (
    Buffer,
    ConfigError,
    Continue,
    FilterRegistry,
    FilterResult,
    FilterSpec,
    Headers,
    HttpFilter,
    StreamContext,
)


@dataclass(frozen=True)
class RedactConfig:
    words: tuple[bytes, ...]
    limit: int


def parse(raw: Mapping[str, Any]) -> RedactConfig:
    words = raw.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise ConfigError(f"expected a list of non-empty strings, got {words!r}", field="words")
    limit = raw.get("maxBodyBytes", 1 << 20)
    if not isinstance(limit, int) or limit <= 0:
        raise ConfigError(f"expected a positive byte count, got {limit!r}", field="maxBodyBytes")
    return RedactConfig(tuple(w.encode() for w in words), limit)


class Redact(HttpFilter):
    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        self.text = False

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self.text = (headers.get("content-type") or "").startswith(("text/", "application/json"))
        return Buffer(self.config.limit) if self.text and not end_stream else None

    def on_response_data(self, ctx: StreamContext, chunk: bytes, end_stream: bool) -> FilterResult:
        if not self.text:
            return None
        for word in self.config.words:
            chunk = chunk.replace(word, b"*" * len(word))
        return Continue(data=chunk)


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(
            name="example-redact",
            make=Redact,
            parse_config=parse,
            description="replace configured words in text responses",
        )
    )
