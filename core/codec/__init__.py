"""Sans-I/O HTTP codecs: bytes in, version-independent events out, and back.

This package imports no anyio, asyncio or socket module.
"""

from ._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlUpdated,
    InformationalReceived,
    ProtocolFailed,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    TunnelData,
)

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "FlowControlUpdated",
    "InformationalReceived",
    "ProtocolFailed",
    "RequestReceived",
    "ResponseReceived",
    "StreamReset",
    "TrailersReceived",
    "TunnelData",
]
