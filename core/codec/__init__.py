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
from ._h11ref import H1ClientCodec as H11RefClientCodec
from ._h11ref import H1ServerCodec as H11RefServerCodec
from ._http1 import H1ClientCodec, H1ServerCodec
from ._http2 import H2_PREFACE, H2Codec, is_h2_preface

__all__ = [
    "H2_PREFACE",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "FlowControlUpdated",
    "H1ClientCodec",
    "H1ServerCodec",
    "H2Codec",
    "H11RefClientCodec",
    "H11RefServerCodec",
    "InformationalReceived",
    "ProtocolFailed",
    "RequestReceived",
    "ResponseReceived",
    "StreamReset",
    "TrailersReceived",
    "TunnelData",
    "is_h2_preface",
]
