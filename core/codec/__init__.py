"""Sans-I/O HTTP codecs: bytes in, version-independent events out, and back.

One sub-package per codec, all speaking the events of ``_events``: ``http1`` (the fast
HTTP/1.1 codecs on llhttp, the data path), ``h11ref`` (the strict HTTP/1.1 reference codecs
on h11, the differential tests' oracle) and ``http2`` (the HTTP/2 codec, over plait's own
HTTP/2 connection or, as its reference, over h2's). This package imports no anyio, asyncio
or socket module.
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
from .h11ref import H1ClientCodec as H11RefClientCodec
from .h11ref import H1ServerCodec as H11RefServerCodec
from .http1 import H1ClientCodec, H1ServerCodec
from .http2 import H2_PREFACE, H2Codec, NativeH2Codec, SidecarH2Codec, is_h2_preface

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
    "NativeH2Codec",
    "ProtocolFailed",
    "RequestReceived",
    "ResponseReceived",
    "SidecarH2Codec",
    "StreamReset",
    "TrailersReceived",
    "TunnelData",
    "is_h2_preface",
]
