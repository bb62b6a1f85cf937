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
from ._http2 import H2_PREFACE, H2Codec, is_h2_preface

__all__ = [
    "H2_PREFACE",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "FlowControlUpdated",
    "H2Codec",
    "InformationalReceived",
    "ProtocolFailed",
    "RequestReceived",
    "ResponseReceived",
    "StreamReset",
    "TrailersReceived",
    "TunnelData",
    "is_h2_preface",
]
