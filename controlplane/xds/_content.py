"""Content versions and encoding: a version is a short hash of what is sent, never a counter.

Hashing the deterministic serialization means the same config always gets the same version,
so a control-plane restart (or a second replica) with the same config hands a reconnecting
client the version it already runs, and a recomputation that changed nothing is recognised as
such and pushes nothing.

* A resource's version (Delta's per-resource ``version``) hashes its serialization.
* :func:`set_version` versions a set of named resources (SotW's ``version_info``; Delta's
  ``system_version_info``): a hash over the sorted ``(name, resource version)`` pairs, so it
  depends neither on the order the source returned them in nor on dict iteration order.

:class:`Encoder` serializes each resource once, however many streams send it: with a fan-out
to a thousand sidecars the same ``ClusterLoadAssignment`` object reaches every stream, and
serializing it per stream would dominate the push. Likewise it versions each *set* of
resources once (:meth:`Encoder.encode_set`): after a change every stream recomputes every type
it subscribed to, and for most types and most streams the answer is the same objects as
before, so the set's version comes from a cache instead of hashing every resource again.
Measured with ``benchmarks/xds_fanout.py`` (1000 streams, 50 clusters, server and clients in
one process on a shared 2-core machine, 4 alternating runs): trigger-to-last-ACK 360-484 ms
with the set cache, 446-688 ms without (both including the 100 ms debounce).

Both caches are keyed by object identity and keep a reference to the objects (so an id cannot
be reused while cached); that is sound because a source hands out resources it never mutates
afterwards (the :class:`XdsSource` contract). Both are bounded (least recently used go first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import any_pb2  # type: ignore[import-untyped]

from ._source import Message

_DIGEST_BYTES = 8  # 16 hex characters: collisions are not a concern at a mesh's config sizes
_ANY_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True, slots=True)
class Encoded:
    """One resource ready to send: its content version and its ``Any`` wrapper."""

    version: str
    packed: Message  # google.protobuf.Any


def set_version(versions: Mapping[str, str]) -> str:
    """A short hex hash of a set of ``name → resource version``; the empty set hashes too."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for name in sorted(versions):
        h.update(name.encode())
        h.update(b"\0")
        h.update(versions[name].encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class EncodedSet:
    """A named set of resources ready to send."""

    version: str  # set_version() of the items
    items: Mapping[str, Encoded]
    packed: tuple[Message, ...]  # the items' Any wrappers, sorted by name


class Encoder:
    """Serializes, hashes and wraps resources and sets of them, once each (see module doc)."""

    def __init__(self, max_entries: int = 16384, max_sets: int = 4096) -> None:
        self._max = max_entries
        self._max_sets = max_sets
        self._cache: OrderedDict[int, tuple[Message, Encoded]] = OrderedDict()
        # key: ((name, id(resource)), ...) in the source's order; the value keeps the resources
        self._sets: OrderedDict[tuple[tuple[str, int], ...], tuple[object, EncodedSet]] = (
            OrderedDict()
        )

    def encode(self, resource: Message) -> Encoded:
        """The resource's version and ``Any``; cached by identity."""
        key = id(resource)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is resource:
            self._cache.move_to_end(key)
            return hit[1]
        data: bytes = resource.SerializeToString(deterministic=True)
        version = hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()
        packed = any_pb2.Any(type_url=_ANY_PREFIX + resource.DESCRIPTOR.full_name, value=data)
        encoded = Encoded(version, packed)
        self._cache[key] = (resource, encoded)
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return encoded

    def encode_set(self, resources: Mapping[str, Message]) -> EncodedSet:
        """Every resource encoded, and the set's version; cached by the resources' identities."""
        held = tuple(resources.items())
        key = tuple((name, id(r)) for name, r in held)
        hit = self._sets.get(key)
        if hit is not None:
            self._sets.move_to_end(key)
            return hit[1]
        items = {name: self.encode(r) for name, r in held}
        encoded = EncodedSet(
            version=set_version({name: e.version for name, e in items.items()}),
            items=items,
            packed=tuple(items[name].packed for name in sorted(items)),
        )
        self._sets[key] = (held, encoded)
        if len(self._sets) > self._max_sets:
            self._sets.popitem(last=False)
        return encoded
