"""``example-request-id``: every request carries an ``x-request-id``; the response echoes it.

Per-stream state on ``self`` (the chain makes one instance per stream), no config.
"""

from __future__ import annotations

import uuid

from plait.plugins import hookimpl
from plait.sdk import FilterRegistry, FilterResult, FilterSpec, Headers, HttpFilter, StreamContext


class RequestId(HttpFilter):
    def __init__(self) -> None:
        self.request_id = ""

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self.request_id = headers.get("x-request-id") or uuid.uuid4().hex
        headers.set("x-request-id", self.request_id)
        return None

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        headers.set("x-request-id", self.request_id)
        return None


@hookimpl
def plait_register_filters(registry: FilterRegistry) -> None:
    registry.register(
        FilterSpec(
            name="example-request-id", make=RequestId, description="set and echo x-request-id"
        )
    )
