"""The resource kinds the control plane stores, and the names the CLI accepts for them.

One table: ``plait get``/``delete`` resolve names through it, ``--help`` and the error for an
unknown kind list it, and a test holds it equal to the kinds the config parser knows
(``plait.core.config.KINDS``), which is what ``apply`` accepts. Kept free of imports so that
every ``plait`` invocation can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "KIND_ALIASES", "Kind", "kinds_help", "normalize_kind"]


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    plural: str
    short: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind("Service", "services", ("svc",)),
    Kind("HTTPRoute", "httproutes", ("route", "routes")),
    Kind("Filter", "filters"),
    Kind("Sidecar", "sidecars"),
    Kind("Workload", "workloads", ("wl",)),
    Kind("BackendTrafficPolicy", "backendtrafficpolicies", ("btp",)),
    Kind("PeerAuthentication", "peerauthentications", ("pa",)),
    Kind("AuthorizationPolicy", "authorizationpolicies", ("ap",)),
    Kind("Telemetry", "telemetries"),
)

KIND_ALIASES: dict[str, str] = {
    alias: k.name for k in KINDS for alias in (k.name.lower(), k.plural, *k.short)
}
"""Every accepted spelling (lower case) → the kind."""


def normalize_kind(text: str) -> str | None:
    """``HTTPRoute`` for ``httproutes``, ``Service`` for ``svc``; ``None`` if unknown."""
    return KIND_ALIASES.get(text.lower())


def kinds_help() -> str:
    """``service, httproute, ... (or plurals; short: svc, route, ...)``."""
    names = ", ".join(k.name.lower() for k in KINDS)
    short = ", ".join(s for k in KINDS for s in k.short)
    return f"{names} (or plurals; short: {short})"
