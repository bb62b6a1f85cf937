"""Control-plane mode of a sidecar: its config comes over xDS instead of from files.

``plait sidecar --control-plane HOST:PORT`` builds an :class:`XdsMode`. At
start it offers the last good config saved on disk (:meth:`initial`), so a
sidecar restarted while the control plane is down serves at once; then
:meth:`run` keeps an ADS stream open. Every complete view of the four xDS
types is decoded with the sidecar's own filter registry (the same frozen
:class:`MeshConfig` static mode builds) and handed to ``install`` — the
sidecar's atomic swap, which also binds new listeners. Before the decode, the
wasm modules the view names by hash and the local cache lacks are fetched from
the control plane's API (``_modules.py``). Whatever ``install``, the fetch or
the decoder refuses is NACKed with the reason, and the previous snapshot keeps
serving.

Over TLS (:meth:`XdsMode.use_tls`) the client presents the sidecar's current certificate on
every new connection: the control plane's TLS xDS port requires it and serves the node only
what that identity may see. A sidecar whose identity comes from the control plane's CA also
follows the trust bundle
(:meth:`XdsMode.follow_trust_bundle`): the client subscribes to the SDS Secret ``ROOTCA``
and each new bundle goes to the :class:`CertStore` (:meth:`CertStore.update_bundle`),
keeping the leaf; ``/config_dump`` shows the bundle's SDS version and root fingerprints.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plait.sdk import ConfigError, FilterSpec

from ..config import AdminConfig, MeshConfig
from ..identity.bootstrap import ControlPlaneTrust, bundle_context
from ..identity.store import CertStore
from ._client import Resources, XdsClient, make_node
from ._decode import Incomplete, decode_mesh, referenced_names
from ._modules import ModuleFetcher, may_name_modules
from ._state import load_state, save_state
from .wire import SDS_ROOTS, combined_version

__all__ = ["XdsMode", "XdsOptions"]

log = logging.getLogger("plait.xds")

Install = Callable[[MeshConfig], Awaitable[str | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsOptions:
    target: str
    """``HOST:PORT`` of the control plane's xDS server."""
    node_id: str
    sidecar: str
    """The Sidecar resource this sidecar runs: ``NAME`` or ``NAME.NAMESPACE``."""
    state_file: Path | None = None
    workload: Mapping[str, Any] | None = None
    """What the sidecar registers: service, serviceAccount, address, labels."""
    module_server: str | None = None
    """The control plane's API (``https://HOST:15014``): where pushed configs' modules are
    fetched (``_modules.py``)."""
    module_bundle: Path | None = None
    """Roots that verify it when the xDS connection has none (``--ca-bundle`` with
    ``--xds-plaintext``)."""


class XdsMode:
    def __init__(
        self, opts: XdsOptions, filter_types: Mapping[str, FilterSpec[Any]], admin: AdminConfig
    ) -> None:
        self.opts = opts
        self.filter_types = filter_types
        self.admin = admin
        name, _, namespace = opts.sidecar.partition(".")
        meta: dict[str, Any] = {
            "sidecar": name,
            "namespace": namespace or "default",
            "admin": {"bind": admin.bind, "port": admin.port},
        }
        if opts.workload:
            meta["workload"] = dict(opts.workload)
        self.client = XdsClient(
            opts.target,
            make_node(opts.node_id, meta),
            self._apply,
            incomplete=Incomplete,
            needed=referenced_names,
        )
        self._install: Install | None = None
        self._identity: CertStore | None = None
        self._trust: tuple[ControlPlaneTrust, CertStore | None] | None = None
        self.modules = (
            ModuleFetcher(opts.module_server, self._module_context) if opts.module_server else None
        )

    def use_tls(self, trust: ControlPlaneTrust, identity: CertStore | None) -> None:
        """Connect over TLS, verifying the control plane with ``trust``; with ``identity``
        (the agent's certificate from the control plane's CA, or ``--identity-*`` files)
        wait for the first certificate and present the current one as the client
        certificate of every new connection: the TLS xDS port requires one and binds the
        node to its SPIFFE ID. A renewed certificate is used from the next connection on;
        an open stream keeps the connection it has."""

        self._trust = (trust, identity)

        async def credentials() -> grpc.ChannelCredentials:
            await trust.resolve()
            while identity is not None and not identity.ready:
                await anyio.sleep(0.05)
            pair = identity.key_pair() if identity is not None else None
            return grpc.ssl_channel_credentials(
                root_certificates=trust.roots_for(identity),
                private_key=pair[0] if pair else None,
                certificate_chain=pair[1] if pair else None,
            )

        self.client.credentials = credentials

    def follow_trust_bundle(self, identity: CertStore) -> None:
        """Subscribe to the SDS trust bundle and hand each new one to ``identity``."""
        self._identity = identity
        self.client.secrets = self._take_secrets
        self.client.secret_names = frozenset({SDS_ROOTS})

    def _take_secrets(self, secrets: Mapping[str, Any]) -> str | None:
        assert self._identity is not None
        secret = secrets.get(SDS_ROOTS)
        if secret is None:
            return None  # a control plane without a CA has no bundle to send
        pem = bytes(secret.validation_context.trusted_ca.inline_bytes)
        if not pem:
            return f"Secret {SDS_ROOTS}: expected validation_context.trusted_ca.inline_bytes (PEM)"
        try:
            changed = self._identity.update_bundle(pem)
        except ValueError as exc:
            return f"Secret {SDS_ROOTS}: {exc}"
        if changed:
            log.info("trust bundle from the control plane: %d root(s)", len(_roots(pem)))
        return None

    def decode(
        self,
        resources: Resources,
        versions: Mapping[str, str],
        filter_types: Mapping[str, FilterSpec[Any]] | None = None,
    ) -> MeshConfig:
        return decode_mesh(
            resources,
            self.filter_types if filter_types is None else filter_types,
            version=combined_version(versions),
            admin=self.admin,
        )

    async def _module_context(self) -> ssl.SSLContext:
        """TLS to the module endpoint: the roots of the xDS connection, else ``--ca-bundle``;
        a sidecar with neither (plaintext xDS) fetches over unverified TLS, the module
        being checked against the hash its config names, which it trusts as much."""
        if self._trust is not None:
            trust, identity = self._trust
            await trust.resolve()
            return trust.api_context(identity)
        if self.opts.module_bundle is not None:
            return bundle_context(self.opts.module_bundle.read_bytes())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # (the bytes are checked against their sha256)
        return ctx

    def initial(self) -> MeshConfig | None:
        """The config saved after the last successful apply, if any and still valid here."""
        if self.opts.state_file is None:
            return None
        try:
            saved = load_state(self.opts.state_file)
            if saved is None:
                return None
            resources, versions = saved
            config = self.decode(resources, versions)
        except (ValueError, ConfigError, Incomplete) as exc:
            log.error("ignoring the saved config: %s", exc)
            return None
        self.client.view = {t: dict(resources.get(t, {})) for t in self.client.view}
        self.client.status.versions = dict(versions)
        log.info("serving the saved config %s until the control plane answers", config.version)
        return config

    async def run(self, install: Install) -> None:
        self._install = install
        await self.client.run()

    async def _apply(self, resources: Resources, versions: Mapping[str, str]) -> str | None:
        if self.modules is not None and may_name_modules(resources):  # (ConfigError → NACK)
            await self.modules.prepare(
                lambda types: self.decode(resources, versions, types), self.filter_types
            )
        config = self.decode(resources, versions)  # Incomplete / ConfigError → client
        assert self._install is not None
        reason = await self._install(config)
        if reason is None and self.opts.state_file is not None:
            try:
                save_state(self.opts.state_file, resources, versions)
            except OSError as exc:
                log.error("cannot save the config to %s: %s", self.opts.state_file, exc)
        return reason

    def dump(self) -> dict[str, Any]:
        st = self.client.status
        return {
            "control_plane": st.target,
            "node_id": self.opts.node_id,
            "connected": st.connected,
            "connected_at": st.connected_at,
            "last_error": st.last_error,
            "last_nack": st.last_nack,
            "versions": dict(st.versions),
            "reconnects": st.reconnects,
            **({"trust_bundle": self._bundle_dump()} if self._identity is not None else {}),
        }

    def _bundle_dump(self) -> dict[str, Any]:
        assert self._identity is not None
        return {
            "version": self.client.status.secrets_version,
            "roots": _roots(self._identity.bundle_pem),
        }


def _roots(bundle_pem: bytes) -> list[str]:
    """SHA-256 fingerprints (hex, of the DER) of the certificates in a PEM bundle."""
    if not bundle_pem:
        return []
    certs = x509.load_pem_x509_certificates(bundle_pem)
    return [hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest() for c in certs]
