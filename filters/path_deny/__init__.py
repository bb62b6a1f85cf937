"""``path-deny``: refuse requests whose path matches a list of Gateway API path matches."""

from plait.sdk import FilterSpec

from ._config import REASON, PathDenyConfig, PathRule, parse_path_deny
from ._filter import PathDeny, normalize_path

__all__ = [
    "PATH_DENY",
    "REASON",
    "PathDeny",
    "PathDenyConfig",
    "PathRule",
    "normalize_path",
    "parse_path_deny",
]

PATH_DENY = FilterSpec(
    name="path-deny",
    make=PathDeny,
    parse_config=parse_path_deny,
    description="answer 403 (or a set status) for requests to listed paths",
    stream_independent=True,
)
