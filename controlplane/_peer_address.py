"""Where the control plane reaches a sidecar's admin listener.

A sidecar announces its admin listener in its node metadata as
``{"bind": HOST, "port": PORT}``. A specific bind address is used as it is; a
wildcard bind (``0.0.0.0``, ``::``) is reached at the host the sidecar's xDS
stream came from, which gRPC reports as ``ipv4:HOST:PORT`` or ``ipv6:[HOST]:PORT``.
Anything else (a missing or malformed entry, a Unix-socket peer) gives ``None``:
the sidecar is listed without an admin address rather than with a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["admin_address", "peer_host"]

_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})


def peer_host(peer: str) -> str | None:
    """The host part of a gRPC peer string (``ipv4:127.0.0.1:5000`` → ``127.0.0.1``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host, _, port = rest.rpartition(":")
        return host if host and port.isdigit() else None
    if kind == "ipv6":
        if rest.startswith("[") and "]:" in rest:
            return rest[1 : rest.index("]:")]
        return None
    return None


def admin_address(announced: Any, peer: str) -> str | None:
    """``HOST:PORT`` (IPv6 hosts bracketed) of the admin listener ``announced`` in the
    node metadata of a stream from ``peer``; ``None`` when it cannot be known."""
    if not isinstance(announced, Mapping):
        return None
    port, bind = announced.get("port"), announced.get("bind", "")
    if not isinstance(port, (int, float)) or not 0 < int(port) < 65536 or not isinstance(bind, str):
        return None
    host = peer_host(peer) if bind in _WILDCARDS else bind
    if host is None:
        return None
    return f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"
