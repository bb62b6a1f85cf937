"""The last good xDS config on disk, so a sidecar can restart while the control plane is down.

After every config it applied, the sidecar writes the resources it was built
from (each as a serialized ``google.protobuf.Any``, with the version of its
type) to one JSON file, atomically (write a temporary file, fsync, rename).
At start, a sidecar in control-plane mode decodes that file with the same
decoder as a live response and serves it until the control plane answers —
Istio calls this static stability. A file that cannot be read or decoded is
reported and ignored: the sidecar then waits for the control plane.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import any_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from ._decode import MESSAGES, resource_name

__all__ = ["load_state", "save_state"]

_FORMAT = 1


def save_state(path: Path, resources: Mapping[str, Mapping[str, Message]],
               versions: Mapping[str, str]) -> None:  # fmt: skip
    doc: dict[str, object] = {"format": _FORMAT, "types": {}}
    types: dict[str, object] = {}
    for type_url, by_name in resources.items():
        blobs = []
        for msg in by_name.values():
            packed = any_pb2.Any()
            packed.Pack(msg)
            blobs.append(base64.b64encode(packed.SerializeToString()).decode())
        types[type_url] = {"version": versions.get(type_url, ""), "resources": blobs}
    doc["types"] = types
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: Path) -> tuple[dict[str, dict[str, Message]], dict[str, str]] | None:
    """The saved resources and versions; ``None`` if there is no file. Raises ValueError."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable saved config: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a plait saved config (format {_FORMAT})")
    resources: dict[str, dict[str, Message]] = {}
    versions: dict[str, str] = {}
    for type_url, entry in dict(doc.get("types", {})).items():
        cls = MESSAGES.get(type_url)
        if cls is None:
            raise ValueError(f"{path}: unknown resource type {type_url}")
        by_name: dict[str, Message] = {}
        for blob in entry["resources"]:
            packed = any_pb2.Any.FromString(base64.b64decode(blob))
            msg = cls()
            if not packed.Unpack(msg):
                raise ValueError(f"{path}: a {packed.type_url} stored as {type_url}")
            by_name[resource_name(type_url, msg)] = msg
        resources[type_url] = by_name
        versions[type_url] = str(entry.get("version", ""))
    return resources, versions
