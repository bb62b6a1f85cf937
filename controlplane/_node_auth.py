"""Which xDS node a peer may be: its certificate's SPIFFE ID bound to the node it announces.

Theory of operation. The control plane's TLS xDS port requires a client certificate and gRPC
verifies it against the CA's current roots (``_serving.py``), so every stream there has an
authenticated peer: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``.
:class:`NodeBinding` (the ADS server's :class:`~.xds.NodeAuthorizer`) checks, once per stream
and before anything is served, that the node the peer announces is one that identity may
be, and refuses the stream otherwise (``PERMISSION_DENIED`` with the reason, logged by the
server, counted by reason in ``plait ca status``):

* the identity is a workload identity of this control plane's trust domain
  (``xds_foreign_identity``);
* a plait sidecar's namespace (node metadata ``plait.namespace``: the namespace of the
  Sidecar resource whose config it gets, and of the Workload it registers) is the
  identity's namespace (``xds_namespace_mismatch``), and the Workload it registers names
  the identity's service account (``xds_service_account_mismatch``); so a certificate for
  one workload buys neither another namespace's config nor a registration in another's
  name;
* a node id belongs to the first identity that used it (``xds_node_taken``): the registry
  keys connections and registered Workloads by node id, so another identity reusing it
  could take over that Workload's endpoint. The binding lives in :attr:`NodeBinding.owners`;
  at start the registry fills it from the stored Workloads registered over TLS (their
  annotation ``plait.dev/registered-identity``), so a restart does not free those ids.

Other clients with a certificate (a proxyless gRPC client, an Envoy) announce no plait
metadata and get only what every node may read: API listeners by name and the trust bundle.

The plaintext port (``--xds-plaintext-port``, off unless asked for) has no identity. It
serves what needs none: config (routing tables and endpoints, which are not secrets) and
the trust bundle (public roots). A node there may not claim a mesh identity — a Workload
with ``identity`` would make its callers originate mTLS to it and trust it as that service
account (``xds_plaintext_identity``) — nor use a node id an authenticated identity holds.
Nothing private to a workload identity is served on either port: a workload's key never
leaves it, and its certificate comes from the CA's API against a join token or a proof of
possession, never over xDS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from plait.sdk import InvalidSpiffeId, SpiffeId

from ._mesh import sidecar_of
from .xds import NodeInfo, Peer

__all__ = ["NodeBinding"]

log = logging.getLogger("plait.controlplane")


class NodeBinding:
    """The :class:`~.xds.NodeAuthorizer` of the control plane's xDS ports (see the module)."""

    def __init__(self, trust_domain: str, count: Callable[[str], None] = lambda reason: None):
        self.trust_domain = trust_domain
        self.count = count
        """Told the reason code of every refusal (the CA's ``refusals`` counter)."""
        self.owners: dict[str, str] = {}
        """node id → the SPIFFE ID that first used it."""

    def authorize(self, node: NodeInfo, peer: Peer) -> str | None:
        reason, message = self._check(node, peer)
        if reason is None:
            if peer.spiffe_id is not None:
                self.owners.setdefault(node.id, peer.spiffe_id)
            return None
        self.count(reason)
        return message

    def _check(self, node: NodeInfo, peer: Peer) -> tuple[str | None, str]:
        owner = self.owners.get(node.id)
        if not peer.secure:
            if owner is not None:
                return "xds_node_taken", (
                    f"node id {node.id!r} belongs to {owner}: it connects to the TLS xDS port "
                    "with its certificate"
                )
            if _claims_identity(node):
                return "xds_plaintext_identity", (
                    "a node with a mesh identity (workload.identity) connects to the TLS xDS "
                    "port with its certificate, not to the plaintext port"
                )
            return None, ""
        if peer.spiffe_id is None:
            return "xds_foreign_identity", "the client certificate carries no SPIFFE ID"
        try:
            sid = SpiffeId.parse(peer.spiffe_id)
        except InvalidSpiffeId as exc:
            return "xds_foreign_identity", f"the client certificate's SPIFFE ID: {exc}"
        if sid.trust_domain != self.trust_domain or sid.namespace is None \
                or sid.service_account is None:  # fmt: skip
            return "xds_foreign_identity", (
                f"{sid} is not a workload identity of trust domain {self.trust_domain} "
                f"(spiffe://{self.trust_domain}/ns/NAMESPACE/sa/SERVICE_ACCOUNT)"
            )
        if owner is not None and owner != str(sid):
            return "xds_node_taken", f"node id {node.id!r} belongs to {owner}, not to {sid}"
        sidecar = sidecar_of(node)
        if sidecar is None:
            return None, ""  # not a plait sidecar: API listeners and the bundle only
        namespace = sidecar[1]
        if namespace != sid.namespace:
            return "xds_namespace_mismatch", (
                f"{sid} may get the config of namespace {sid.namespace}, not of {namespace} "
                f"(node {node.id!r} runs Sidecar {sidecar[0]}.{namespace})"
            )
        account = _service_account(node)
        if account is not None and account != sid.service_account:
            return "xds_service_account_mismatch", (
                f"{sid} may register Workloads of service account {sid.service_account}, "
                f"not of {account} (node {node.id!r})"
            )
        return None, ""


def _workload(node: NodeInfo) -> Mapping[str, Any] | None:
    meta = node.metadata.get("plait")
    workload = meta.get("workload") if isinstance(meta, Mapping) else None
    return workload if isinstance(workload, Mapping) else None


def _service_account(node: NodeInfo) -> str | None:
    """The service account of the Workload the node registers (``None``: it registers none)."""
    workload = _workload(node)
    if workload is None:
        return None
    return str(workload.get("serviceAccount") or "default")  # as the registry writes it


def _claims_identity(node: NodeInfo) -> bool:
    workload = _workload(node)
    return workload is not None and bool(workload.get("identity"))
