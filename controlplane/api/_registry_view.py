"""What the resource API needs from the service registry: workload status and a health check.

The registry (which tracks connected sidecars and what they ACKed or NACKed)
implements this Protocol; the API only reads through it, so it works, with
less to show, when no registry runs.

``status(namespace, name)`` returns the Kubernetes-style ``status`` of one
Workload, or ``None`` when the registry knows nothing of it. The API passes it
through as ``status``; the CLI reads these keys (others are shown by ``-o yaml``)::

    {"connected": true,
     "ackedVersion": "3f2a…",                 # or "ackedVersions": {TYPE: VERSION}
     "lastNack": {"version": "9c1e…", "message": "…", "at": 1764154712.3}}  # or null

``check()`` returns one entry per known sidecar for ``plait check``. An entry
fails the check when it has ``"ok": false`` or a non-empty ``problems`` list
(or ``problem`` string); it is named by ``workload``, else ``node``::

    {"node": "web-1", "workload": "Workload/default/web-1", "connected": false,
     "ok": false, "problems": ["disconnected"]}

``scrape_targets()`` returns the Prometheus ``http_sd`` list (``controlplane/_scrape_targets.py``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = [
    "RegistryView",
    "acked_version",
    "sidecar_name",
    "sidecar_problems",
    "workload_status",
]


class RegistryView(Protocol):
    def status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ``status`` of Workload ``namespace/name``, or ``None`` if unknown."""

    def check(self) -> list[Mapping[str, Any]]:
        """One entry per known sidecar; entries with a ``problem`` fail ``plait check``."""

    def scrape_targets(self) -> list[dict[str, Any]]:
        """Prometheus ``http_sd`` target groups: each connected sidecar's admin address."""


def sidecar_name(entry: Mapping[str, Any]) -> str:
    """How a ``check()`` entry is named: its workload, else its node id."""
    return str(entry.get("workload") or entry.get("node") or "?")


def sidecar_problems(entry: Mapping[str, Any]) -> list[str]:
    """The problems of a ``check()`` entry (``problems``, ``problem``, or ``ok: false``)."""
    found = [str(p) for p in entry.get("problems") or ()]
    if entry.get("problem"):
        found.append(str(entry["problem"]))
    if not found and entry.get("ok") is False:
        found.append("not ok")
    return found


def acked_version(status: Mapping[str, Any]) -> str:
    """``ackedVersion``, or the distinct values of ``ackedVersions``, or ``-``."""
    if status.get("ackedVersion"):
        return str(status["ackedVersion"])
    versions = status.get("ackedVersions")
    if isinstance(versions, Mapping) and versions:
        return ",".join(sorted({str(v) for v in versions.values()}))
    return "-"


def workload_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``status`` the API shows: the registry's row with ``ackedVersion`` filled in
    (from ``ackedVersions`` when the registry keeps one per type) and times as RFC 3339."""
    status = dict(row)
    if "ackedVersion" not in status:
        acked = acked_version(status)
        status["ackedVersion"] = None if acked == "-" else acked
    nack = status.get("lastNack")
    if isinstance(nack, Mapping) and isinstance(nack.get("at"), int | float):
        at = datetime.datetime.fromtimestamp(nack["at"], datetime.UTC)
        status["lastNack"] = {**nack, "at": at.isoformat(timespec="seconds").replace("+00:00", "Z")}
    return status
