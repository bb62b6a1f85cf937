"""SPIFFE IDs: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``.

A workload's identity in the mesh. The rules are the SPIFFE ID standard's
(spiffe/spiffe ``standards/SPIFFE-ID.md``): the scheme is ``spiffe``, the trust
domain is lower-case letters, digits, ``.``, ``-`` and ``_``; the path is made of
non-empty segments of letters, digits, ``.``, ``-`` and ``_``, none of them ``.``
or ``..``; no query, fragment, port or user info. Parsing is strict because an ID
decides who may call whom: two spellings of one identity must not exist.

plait's workload IDs have the path ``/ns/<namespace>/sa/<service-account>``
(Istio's shape); other paths parse, and :attr:`SpiffeId.namespace` and
:attr:`SpiffeId.service_account` are then ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_TRUST_DOMAIN", "InvalidSpiffeId", "SpiffeId"]

DEFAULT_TRUST_DOMAIN = "plait.local"

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_MAX_LENGTH = 2048


class InvalidSpiffeId(ValueError):
    """The text is not a SPIFFE ID; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A parsed SPIFFE ID. ``str(id)`` is its one canonical spelling."""

    trust_domain: str
    path: str
    """``""`` or ``/segment/...``."""

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        if len(text) > _MAX_LENGTH:
            raise InvalidSpiffeId(f"longer than {_MAX_LENGTH} characters")
        scheme, sep, rest = text.partition("://")
        if not sep or scheme != "spiffe":
            raise InvalidSpiffeId(f"{text!r}: expected the scheme spiffe://")
        domain, slash, path = rest.partition("/")
        check_trust_domain(domain)
        if slash:
            path = "/" + path
            for segment in path[1:].split("/"):
                if segment in ("", ".", ".."):
                    raise InvalidSpiffeId(f"{text!r}: empty, '.' or '..' path segment")
                if not _SEGMENT.fullmatch(segment):
                    raise InvalidSpiffeId(
                        f"{text!r}: path segment {segment!r} has a character outside "
                        "letters, digits, '.', '-', '_'"
                    )
        return cls(domain, path)

    @classmethod
    def for_workload(cls, trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
        """``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``, checked."""
        return cls.parse(f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")

    def _part(self, key: str) -> str | None:
        parts = self.path.split("/")
        if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
            return parts[2] if key == "ns" else parts[4]
        return None

    @property
    def namespace(self) -> str | None:
        return self._part("ns")

    @property
    def service_account(self) -> str | None:
        return self._part("sa")

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"


def check_trust_domain(domain: str) -> str:
    """``domain`` if it is a valid trust domain name, else :class:`InvalidSpiffeId`."""
    if not domain:
        raise InvalidSpiffeId("the trust domain is empty")
    if not _TRUST_DOMAIN.fullmatch(domain):
        raise InvalidSpiffeId(
            f"trust domain {domain!r}: only lower-case letters, digits, '.', '-', '_' are allowed"
        )
    return domain
