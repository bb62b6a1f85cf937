"""The host's side of a module's contexts: one root context, one per stream.

Context ids are the host's (the spec: the root context is created with parent
0; ids are never reused while the instance lives). A :class:`StreamState`
holds what the host calls of that stream's callbacks act on: plait's
:class:`~plait.sdk.StreamContext` (the request and response heads, whose header
lists the module reads and changes in place), the body chunk and trailers of
the callback in progress, and what the module asked for (a local reply, a
resumed stream, properties it set).
"""

from __future__ import annotations

from plait.sdk import Headers, LocalReply, StreamContext

__all__ = ["RootState", "StreamState"]


class RootState:
    """The plugin's root context: its configuration buffers."""

    __slots__ = ("id", "plugin_config", "vm_config")

    def __init__(self, context_id: int, plugin_config: bytes, vm_config: bytes) -> None:
        self.id = context_id
        self.plugin_config = plugin_config
        self.vm_config = vm_config


class StreamState:
    """One HTTP stream's context in the module."""

    __slots__ = (
        "body",
        "body_end",
        "body_type",
        "closed",
        "ctx",
        "id",
        "properties",
        "reply",
        "request_trailers",
        "response_trailers",
        "resumed",
    )

    def __init__(self, context_id: int, ctx: StreamContext) -> None:
        self.id = context_id
        self.ctx = ctx
        self.body: bytes | None = None
        """The body buffer visible to the body callback in progress (else ``None``)."""
        self.body_type = -1
        self.body_end = False
        self.request_trailers: Headers | None = None
        self.response_trailers: Headers | None = None
        self.reply: LocalReply | None = None
        """Set by ``proxy_send_local_response``: the stream ends with it."""
        self.resumed = [False, False]
        """Per direction (request 0, response 1): ``proxy_continue_stream`` was called
        since the last pause."""
        self.closed = False
        """``proxy_close_stream`` was called."""
        self.properties: dict[bytes, bytes] | None = None
        """Properties the module set with ``proxy_set_property``."""
