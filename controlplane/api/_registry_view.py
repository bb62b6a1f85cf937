"""What the resource API needs from the service registry: workload status and a health check.

The registry (which tracks connected sidecars and what they ACKed or NACKed)
implements this Protocol; the API only reads through it, so it works, with
less to show, when no registry runs.

``status(namespace, name)`` returns the Kubernetes-style ``status`` of one
Workload, or ``None`` when the registry knows nothing of it::

    {"connected": true, "ackedVersion": "3f2a…",
     "lastNack": {"version": "9c1e…", "message": "…", "at": "2026-11-26T10:58:32Z"}}

(``lastNack`` is ``null`` when the sidecar never NACKed.)

``check()`` returns one entry per known sidecar for ``plait check``; an entry
with a non-empty ``problem`` makes the check fail::

    {"workload": "default/web-7f9c", "connected": false, "ackedVersion": "3f2a…",
     "problem": "disconnected for 40s"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["RegistryView"]


class RegistryView(Protocol):
    def status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ``status`` of Workload ``namespace/name``, or ``None`` if unknown."""

    def check(self) -> list[Mapping[str, Any]]:
        """One entry per known sidecar; entries with a ``problem`` fail ``plait check``."""
