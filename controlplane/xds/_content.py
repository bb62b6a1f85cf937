"""Content versions: a version is a short hash of what is sent, never a counter.

Hashing the deterministic serialization means the same config always gets the same version,
so a control-plane restart (or a second replica) with the same config hands a reconnecting
client the version it already runs, and a recomputation that changed nothing is recognised as
such and pushes nothing.

* :func:`resource_version` versions one resource (Delta's per-resource ``version``).
* :func:`set_version` versions a set of named resources (SotW's ``version_info``; Delta's
  ``system_version_info``): a hash over the sorted ``(name, resource version)`` pairs, so it
  depends neither on the order the source returned them in nor on dict iteration order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from google.protobuf import any_pb2  # type: ignore[import-untyped]

from ._source import Message

_DIGEST_BYTES = 8  # 16 hex characters: collisions are not a concern at a mesh's config sizes


def resource_version(resource: Message) -> str:
    """A short hex hash of the resource's deterministic serialization."""
    data: bytes = resource.SerializeToString(deterministic=True)
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def set_version(versions: Mapping[str, str]) -> str:
    """A short hex hash of a set of ``name → resource version``; ``""`` hashes too."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for name in sorted(versions):
        h.update(name.encode())
        h.update(b"\0")
        h.update(versions[name].encode())
        h.update(b"\n")
    return h.hexdigest()


def pack(resource: Message) -> Message:
    """Wrap a resource in a ``google.protobuf.Any`` (type URL ``type.googleapis.com/...``)."""
    wrapped = any_pb2.Any()
    wrapped.Pack(resource)
    return wrapped
