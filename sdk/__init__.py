"""plait's public SDK: the types a filter author needs, and nothing of the core.

``plait.sdk`` depends on no other plait package; ``plait.sdk.testing`` drives a
filter with no sockets.
"""

from ._body import BufferedBody, MessageBody
from ._context import (
    ConnectionContext,
    PeerIdentity,
    RequestHead,
    ResponseHead,
    Stash,
    StashKey,
    StreamContext,
)
from ._exceptions import (
    BodyTooLarge,
    ConfigError,
    DownstreamProtocolError,
    FilterError,
    HeadersTooLarge,
    NoHealthyUpstream,
    NoRoute,
    PlaitError,
    RequestTimeout,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
)
from ._filter import (
    HOOK_NAMES,
    CallNext,
    ConnectionFilter,
    FailStrategy,
    FilterRegistry,
    FilterSpec,
    HttpFilter,
    PassThroughFilter,
    UpstreamRequest,
    UpstreamResponse,
)
from ._headers import HeaderPairs, Headers
from ._hooks import HookResult
from ._policy import Pending, TryAgain, TryOutcome
from ._results import CONTINUE, Buffer, Continue, FilterResult, LocalReply
from ._spiffe import DEFAULT_TRUST_DOMAIN, InvalidSpiffeId, SpiffeId
from ._upstream import EndpointInfo, UpstreamCluster

__all__ = [
    "CONTINUE",
    "DEFAULT_TRUST_DOMAIN",
    "HOOK_NAMES",
    "BodyTooLarge",
    "Buffer",
    "BufferedBody",
    "CallNext",
    "ConfigError",
    "ConnectionContext",
    "ConnectionFilter",
    "Continue",
    "DownstreamProtocolError",
    "EndpointInfo",
    "FailStrategy",
    "FilterError",
    "FilterRegistry",
    "FilterResult",
    "FilterSpec",
    "HeaderPairs",
    "Headers",
    "HeadersTooLarge",
    "HookResult",
    "HttpFilter",
    "InvalidSpiffeId",
    "LocalReply",
    "MessageBody",
    "NoHealthyUpstream",
    "NoRoute",
    "PassThroughFilter",
    "PeerIdentity",
    "Pending",
    "PlaitError",
    "RequestHead",
    "RequestTimeout",
    "ResponseHead",
    "SpiffeId",
    "Stash",
    "StashKey",
    "StreamContext",
    "TryAgain",
    "TryOutcome",
    "UpstreamCluster",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamReset",
    "UpstreamResponse",
    "UpstreamTimeout",
]
