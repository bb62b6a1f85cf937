"""The control plane's certificate authority: workload certificates, join tokens, root rotation.

:func:`open_ca` opens (or creates) the CA in ``<data-dir>/ca`` and returns the
:class:`CAService` the API serves (``controlplane/api/_ca.py``). The design is in
docs/identity.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from plait.sdk import DEFAULT_TRUST_DOMAIN, InvalidSpiffeId, SpiffeId

from ._authority import CertificateAuthority, Issued, RotationRefused
from ._bootstrap import Provided
from ._files import CAFileError
from ._group import GroupCommit, LedgerUnavailable
from ._ledger import Entry
from ._service import CAService, Issuance, Refused
from ._tokens import JoinTokens, TokenRefused, load_token_key
from ._x509 import CheckedCSR, CSRError, check_csr, fingerprint

__all__ = [
    "MIN_LEAF_TTL",
    "CAFileError",
    "CAService",
    "CSRError",
    "CertificateAuthority",
    "CheckedCSR",
    "Entry",
    "GroupCommit",
    "Issuance",
    "Issued",
    "JoinTokens",
    "LedgerUnavailable",
    "Provided",
    "Refused",
    "RotationRefused",
    "TokenRefused",
    "check_csr",
    "fingerprint",
    "open_ca",
]

MIN_LEAF_TTL = 60.0
DEFAULT_LEAF_TTL = 3600.0


def open_ca(
    data_dir: Path,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    leaf_ttl: float = DEFAULT_LEAF_TTL,
    provided: Provided | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> CAService:
    """The CA service of ``data_dir`` (its files in ``<data-dir>/ca``).

    Raises:
        CAFileError: a CA file is unsafe (group/world readable key) or invalid.
        ValueError: an invalid trust domain, or ``leaf_ttl`` below 60 seconds.
    """
    try:
        SpiffeId.parse(f"spiffe://{trust_domain}")  # the SDK's trust-domain rules
    except InvalidSpiffeId as exc:
        raise ValueError(f"--trust-domain: {exc}") from None
    if leaf_ttl < MIN_LEAF_TTL:
        raise ValueError(f"--cert-ttl {leaf_ttl:g}s: expected at least {MIN_LEAF_TTL:g}s")
    directory = data_dir / "ca"
    kwargs = {"clock": clock} if clock is not None else {}
    ca = CertificateAuthority.open(
        directory, trust_domain=trust_domain, provided=provided, **kwargs
    )
    tokens = JoinTokens(load_token_key(directory / "token-key"))
    return CAService(ca, tokens, leaf_ttl)
