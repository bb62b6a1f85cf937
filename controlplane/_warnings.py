"""Apply-time warnings: what is valid but what some client will not do as written.

``plait apply`` stores these documents (they are valid, and plait sidecars follow them) and
prints each warning; the operator learns at once what would otherwise surface only as a
NACK or a silently different behaviour on one kind of client:

* a route rule whose backends all have weight 0: plait sidecars answer every request it
  matches with 503 ``no backend``; gRPC proxyless clients reject the route configuration
  (a weighted cluster set with total weight 0 is invalid for them) and NACK it;
* a rule's ``retry.attempts`` above what gRPC clients honour: they make at most
  :data:`GRPC_MAX_ATTEMPTS` tries in all (gRFC A44), so ``attempts`` (retries after the first
  try) above ``GRPC_MAX_ATTEMPTS - 1`` is cut to that on a route a gRPC client can use (one
  whose parent Service port speaks ``grpc``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from plait.core.config import ParsedDocument, Protocol

__all__ = ["GRPC_MAX_ATTEMPTS", "client_warnings"]

GRPC_MAX_ATTEMPTS = 5
"""gRPC clients cap a retry policy's tries (first try included) at 5."""


def client_warnings(
    puts: Iterable[ParsedDocument], candidate: Sequence[ParsedDocument]
) -> list[str]:
    """Warnings for the route rules in ``puts``, read against the whole ``candidate`` set."""
    grpc_ports = {
        (d.meta.namespace, d.meta.name): {
            p.port for p in d.resource.ports if p.protocol is Protocol.GRPC
        }
        for d in candidate
        if d.meta.kind == "Service"
    }
    out: list[str] = []
    for d in puts:
        if d.meta.kind != "HTTPRoute":
            continue
        route = d.resource
        where = f"HTTPRoute/{d.meta.namespace}/{d.meta.name}"
        grpc = any(
            (p.port in ports if p.port is not None else bool(ports))
            for p in route.parents
            for ports in [grpc_ports.get((p.namespace, p.name), set())]
        )
        for i, rule in enumerate(route.rules):
            if rule.backends and all(b.weight == 0 for b in rule.backends):
                out.append(
                    f"{where}: spec.rules[{i}]: every backendRef has weight 0: plait sidecars "
                    "answer its requests with 503 (no backend) and gRPC clients reject the "
                    "route (NACK)"
                )
            retries = rule.retry.attempts if rule.retry is not None else 0
            if grpc and retries > GRPC_MAX_ATTEMPTS - 1:
                out.append(
                    f"{where}: spec.rules[{i}].retry.attempts: {retries} retries: gRPC clients "
                    f"make at most {GRPC_MAX_ATTEMPTS} tries in all, so they retry at most "
                    f"{GRPC_MAX_ATTEMPTS - 1} times (plait sidecars retry {retries} times)"
                )
    return out
