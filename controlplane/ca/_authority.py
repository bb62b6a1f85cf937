"""The certificate authority: issuance, renewal checks, root rotation and status.

Theory of operation: :meth:`CertificateAuthority.open` loads ``<data-dir>/ca/`` or, at
the first start, creates a root (ECDSA P-256, 10 years, pathlen 2) and an intermediate
(signed by the root, pathlen 0, 1 year), or imports the operator's (:class:`Provided`).
Leaves are signed by the current intermediate; every issuance is recorded in the ledger
with the fingerprint of the root it chains to.

Root rotation (:meth:`rotate`) makes a new generation (root + intermediate) and a
cross-signed certificate (the new root's key and subject, issued by the old root).
While the previous root is kept, the trust bundle holds both roots and every chain
handed out is ``leaf, new intermediate, cross-signed root``: a peer that still trusts
only the old root verifies it through the cross-signed certificate, a peer with the new
bundle through the new root. The rotation ends by itself (checked on every issuance and
status read) once the ledger has no unexpired leaf chaining to the old root; the bundle
then holds the new root alone. The clock is injectable (``clock``) so tests can move
time instead of waiting for certificates to expire.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ._bootstrap import ROOT_PATH_LENGTH, Provided, first_generation, new_root_and_intermediate
from ._files import CAFileError
from ._issued import Issued, pem_of_der
from ._leafder import LeafSigner
from ._ledger import LeafRecord, Ledger
from ._state import Generation, State, load_state, save_state, write_generation
from ._x509 import CheckedCSR, cross_sign, fingerprint, pem

__all__ = ["CAExpired", "CertificateAuthority", "Issued", "RotationRefused"]

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CAExpired(Exception):
    """The CA cannot issue: its intermediate has expired (the message says what to do)."""


class RotationRefused(Exception):
    """A rotation cannot start (one is in progress, or the root key is not here)."""


class CertificateAuthority:
    def __init__(
        self, directory: Path, state: State, ledger: Ledger, trust_domain: str, clock: Clock
    ) -> None:
        self.directory = directory
        self.state = state
        self.ledger = ledger
        self.trust_domain = trust_domain
        self.clock = clock
        self.issued = {"first": 0, "renewal": 0}
        self._finish_check_at = 0.0

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        trust_domain: str,
        provided: Provided | None = None,
        clock: Clock = _utcnow,
    ) -> CertificateAuthority:
        """Load the CA in ``directory`` (``<data-dir>/ca``), creating it at the first start."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = load_state(directory)
        if state is None:
            state = State(first_generation(directory, trust_domain, provided, clock()))
            try:
                save_state(directory, state, first=True)
                log.info("CA: created root %s in %s", state.current.fingerprint[:16], directory)
            except FileExistsError:  # another control plane made one first: use it
                shutil.rmtree(directory / state.current.name, ignore_errors=True)
                state = load_state(directory)
                assert state is not None
        elif provided is not None:
            given = x509.load_pem_x509_certificate(provided.root_cert.read_bytes())
            if fingerprint(given) not in {fingerprint(state.current.root)} | (
                {fingerprint(state.previous.root)} if state.previous else set()
            ):
                raise CAFileError(
                    f"{provided.root_cert}: {directory} already holds a CA with another root "
                    f"({state.current.fingerprint[:16]}); drop the CA flags or use a new --data-dir"
                )
        ledger = Ledger(directory / "ledger.db")
        return cls(directory, state, ledger, trust_domain, clock)

    def close(self) -> None:
        self.ledger.close()

    # -- issuance ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        self._state = state
        tail = [state.current.intermediate, *([state.cross] if state.cross else [])]
        roots = [state.current.root, *([state.previous.root] if state.previous else [])]
        self._tail_pem = b"".join(pem(c) for c in tail)
        self._bundle_pem = b"".join(pem(r) for r in roots)
        self._usable_until = state.current.intermediate.not_valid_after_utc
        self._signer = LeafSigner(state.current.intermediate, state.current.intermediate_key)

    def bundle_pem(self) -> bytes:
        self._maybe_finish()
        return self._bundle_pem

    def sign(
        self,
        csr: CheckedCSR,
        spiffe_id: str,
        ttl: dt.timedelta,
        now: dt.datetime,
        *,
        renewal: bool = False,
        extra_sans: Sequence[x509.GeneralName] = (),
    ) -> Issued:
        """A leaf for ``csr``, not recorded yet: record :meth:`Issued.entry` before it
        leaves (:meth:`Ledger.write`), then :meth:`count` it."""
        gen = self.state.current
        self.check_usable(now)
        signed = self._signer.leaf(csr.public_key, spiffe_id, now, ttl, extra_sans)
        chain = pem_of_der(signed.der) + self._tail_pem
        return Issued(signed, chain, self.bundle_pem(), spiffe_id, gen.fingerprint,
                      now.timestamp(), renewal)  # fmt: skip

    def count(self, issued: Issued) -> None:  # a workload's, recorded and sent
        self.issued["renewal" if issued.renewal else "first"] += 1

    def issue(
        self,
        csr: x509.CertificateSigningRequest | CheckedCSR,
        spiffe_id: str,
        ttl: dt.timedelta,
        *,
        renewal: bool = False,
        extra_sans: Sequence[x509.GeneralName] = (),
        counted: bool = True,
    ) -> Issued:
        """A leaf for a trusted CSR (the control plane's own), signed and recorded."""
        now = self.clock()
        checked = csr if isinstance(csr, CheckedCSR) else CheckedCSR.of(csr)
        issued = self.sign(checked, spiffe_id, ttl, now, renewal=renewal, extra_sans=extra_sans)
        self.ledger.write([issued.entry()], now.timestamp())
        if counted:  # workloads' certificates (not the control plane's own)
            self.count(issued)
        return issued

    def check_usable(self, now: dt.datetime | None = None) -> None:
        """:class:`CAExpired` if the current intermediate cannot sign any more."""
        if (self.clock() if now is None else now) >= self._usable_until:
            raise CAExpired(
                f"the CA's intermediate expired at {self._usable_until.isoformat()}; run "
                "`plait ca rotate` (a new root and intermediate)"
            )

    def recorded(self, leaf: x509.Certificate, sha256: str | None = None) -> LeafRecord | None:
        """The ledger's record of ``leaf`` if it is a certificate this CA issued, else ``None``.

        The presented certificate must be byte for byte the one recorded (same SHA-256)
        and chain to a root the CA still serves. A record without a fingerprint (an older
        ledger) falls back to checking the certificate's signature by an intermediate.
        ``sha256``: the leaf's fingerprint, if the caller has it.
        """
        record = self.ledger.leaf(leaf.serial_number)
        if record is None:
            return None
        roots = {self.state.current.fingerprint}
        if self.state.previous is not None:
            roots.add(self.state.previous.fingerprint)
        if record.fingerprint is None:
            gen = self.issuer_of(leaf)
            return record if gen is not None and gen.fingerprint == record.root else None
        if sha256 is None:
            sha256 = fingerprint(leaf)
        return record if record.fingerprint == sha256 and record.root in roots else None

    def issuer_of(self, leaf: x509.Certificate) -> Generation | None:
        """The generation whose intermediate signed ``leaf``, if any."""
        gens = [self.state.current] + ([self.state.previous] if self.state.previous else [])
        for gen in gens:
            try:
                leaf.verify_directly_issued_by(gen.intermediate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return gen
        return None

    # -- rotation ---------------------------------------------------------------------------

    def rotate(self) -> dict[str, Any]:
        """Start a root rotation; its status. :class:`RotationRefused` if it cannot start."""
        self._maybe_finish(force=True)
        old = self.state.current
        if self.state.previous is not None:
            raise RotationRefused(f"a root rotation is in progress: {self._rotation_line()}")
        if old.root_key is None:
            raise RotationRefused(
                "the root key is not in the data directory (the operator keeps it offline); "
                "a rotation cross-signs the new root with it"
            )
        limit = old.root.extensions.get_extension_for_class(x509.BasicConstraints).value
        if limit.path_length is not None and limit.path_length < ROOT_PATH_LENGTH:
            raise RotationRefused(
                f"the root's pathLenConstraint is {limit.path_length}: peers that trust only "
                "this root could not verify leaves of a cross-signed successor (needs 2 or none)"
            )
        now = self.clock()
        root, root_key, inter, inter_key = new_root_and_intermediate(
            self.trust_domain, now, suffix=now.strftime(" %Y%m%dT%H%M%SZ")
        )
        index = int(old.name.split("-")[1]) + 1
        gen = write_generation(self.directory, index, root, root_key, inter, inter_key)
        state = State(gen, previous=old, cross=cross_sign(root, old.root, old.root_key))
        save_state(self.directory, state)
        self.state = state
        log.info(
            "CA: root rotation started: new root %s cross-signed by %s",
            gen.fingerprint[:16],
            old.fingerprint[:16],
        )
        return self.status()

    def _maybe_finish(self, force: bool = False) -> None:
        prev = self.state.previous
        if prev is None:
            return
        now = self.clock().timestamp()
        if not force and now < self._finish_check_at:
            return
        self._finish_check_at = now + 1.0  # at most one ledger query a second
        live, _ = self.ledger.live_on_root(prev.fingerprint, now)
        if live == 0:
            self.state = replace(self.state, previous=None, cross=None)
            save_state(self.directory, self.state)
            log.info(
                "CA: root rotation done: no leaf chains to the old root %s any more; "
                "the bundle holds %s alone",
                prev.fingerprint[:16],
                self.state.current.fingerprint[:16],
            )

    def _rotation_line(self) -> str:
        prev = self.state.previous
        assert prev is not None
        live, last = self.ledger.live_on_root(prev.fingerprint, self.clock().timestamp())
        when = dt.datetime.fromtimestamp(last, dt.UTC).isoformat() if last else "now"
        return f"{live} leaves still on the old root, old root droppable after {when}"

    def status(self) -> dict[str, Any]:
        self._maybe_finish(force=True)
        now = self.clock().timestamp()

        def root(gen: Generation, role: str) -> dict[str, Any]:
            return {
                "role": role,
                "fingerprint": gen.fingerprint,
                "subject": gen.root.subject.rfc4514_string(),
                "notAfter": gen.root.not_valid_after_utc.isoformat(),
                "intermediateNotAfter": gen.intermediate.not_valid_after_utc.isoformat(),
            }

        roots = [root(self.state.current, "current")]
        out: dict[str, Any] = {"trustDomain": self.trust_domain, "phase": "stable", "roots": roots}
        if self.state.previous is not None:
            roots.append(root(self.state.previous, "previous"))
            live, last = self.ledger.live_on_root(self.state.previous.fingerprint, now)
            out["phase"] = "rotating"
            out["leavesOnOldRoot"] = live
            out["oldRootDroppableAfter"] = (
                dt.datetime.fromtimestamp(last, dt.UTC).isoformat() if last else None
            )
        out["issued"] = {**self.issued, **self.ledger.counts(now)}
        left = self.state.current.intermediate.not_valid_after_utc.timestamp() - now
        out["warnings"] = (
            [f"the intermediate expires in {left / 86400:.0f} days: run `plait ca rotate`"]
            if left < 30 * 86400
            else []
        )
        return out
