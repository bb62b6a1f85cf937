"""``authorization``: Istio-style AuthorizationPolicy enforcement on inbound traffic.

The translator puts it first in the chains of inbound listeners of the sidecars that
policies select (the core never names it); its config lists those policies. See
``_config.py`` for matching, ``_filter.py`` for the decision on a request and
``_connection.py`` for the decision on a ``tcp`` listener's connection.
"""

from plait.sdk import FilterSpec

from ._config import AuthzConfig, Policy, parse_authz
from ._connection import ConnectionAuthorization
from ._filter import DENIED_HEADER, Authorization

__all__ = [
    "AUTHORIZATION",
    "DENIED_HEADER",
    "Authorization",
    "AuthzConfig",
    "ConnectionAuthorization",
    "Policy",
    "parse_authz",
]

AUTHORIZATION = FilterSpec(
    name="authorization",
    make=Authorization,
    parse_config=parse_authz,
    description="allow, deny or audit requests by the caller's verified identity, path, method",
    stream_independent=True,
    connection=ConnectionAuthorization,
)
