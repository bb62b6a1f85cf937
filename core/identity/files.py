"""An identity from files: for operators with their own PKI, and for static-mode tests.

The sidecar flags ``--identity-cert CHAIN.pem --identity-key KEY.pem --trust-bundle
BUNDLE.pem`` name a leaf chain (leaf first, carrying exactly one ``spiffe://`` URI SAN),
its private key, and the roots that peers' chains must lead to. They are read once at
start (an unreadable or invalid file stops the start with an error naming the flag) and
again whenever one of them changes or the sidecar gets SIGHUP; a reload that fails keeps
the current identity and logs why. Each load goes through :meth:`CertStore.update`, so
open connections keep the certificate they negotiated and new handshakes use the new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from plait.sdk import ConfigError

from .store import CertStore, Leaf

__all__ = ["IdentityFiles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    cert: str
    key: str
    bundle: str

    @property
    def paths(self) -> tuple[str, str, str]:
        return (self.cert, self.key, self.bundle)

    def load(self, store: CertStore) -> Leaf:
        """Read the three files into ``store``; :class:`ConfigError` names the flag at fault."""
        store.source = "files"
        data: dict[str, bytes] = {}
        for flag, path in (
            ("--identity-cert", self.cert),
            ("--identity-key", self.key),
            ("--trust-bundle", self.bundle),
        ):
            try:
                data[flag] = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read: {exc.strerror}", file=path, field=flag) from None
            if b"-----BEGIN " not in data[flag]:
                raise ConfigError("expected PEM data", file=path, field=flag)
        try:
            return store.update(
                chain_pem=data["--identity-cert"],
                key_pem=data["--identity-key"],
                bundle_pem=data["--trust-bundle"],
            )
        except Exception as exc:  # ssl.SSLError, ValueError from cryptography / the store
            raise ConfigError(
                f"cannot use this certificate, key and trust bundle: {exc}",
                file=self.cert,
                field="--identity-cert/--identity-key/--trust-bundle",
            ) from None

    def reload(self, store: CertStore) -> bool:
        """Reload after a change; on error keep the current identity and log it."""
        try:
            leaf = self.load(store)
        except ConfigError as exc:
            store.note_failure(str(exc))
            log.error("identity files not reloaded, keeping the current identity: %s", exc)
            return False
        log.info(
            "identity loaded: %s, valid until %s (serial %x)",
            leaf.spiffe_id,
            leaf.not_after.isoformat(),
            leaf.serial,
        )
        return True
