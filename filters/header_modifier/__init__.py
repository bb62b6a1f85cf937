"""``request-header-modifier`` and ``response-header-modifier``: Gateway API HTTPHeaderFilter."""

from plait.sdk import FilterSpec

from ._config import HeaderModifierConfig, HeaderValue, parse_header_modifier
from ._filter import RequestHeaderModifier, ResponseHeaderModifier

__all__ = [
    "REQUEST_HEADER_MODIFIER",
    "RESPONSE_HEADER_MODIFIER",
    "HeaderModifierConfig",
    "HeaderValue",
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "parse_header_modifier",
]

REQUEST_HEADER_MODIFIER = FilterSpec(
    name="request-header-modifier",
    make=RequestHeaderModifier,
    parse_config=parse_header_modifier,
    description="set, add or remove request headers (Gateway API RequestHeaderModifier)",
    stream_independent=True,
)
RESPONSE_HEADER_MODIFIER = FilterSpec(
    name="response-header-modifier",
    make=ResponseHeaderModifier,
    parse_config=parse_header_modifier,
    description="set, add or remove response headers (Gateway API ResponseHeaderModifier)",
    stream_independent=True,
)
