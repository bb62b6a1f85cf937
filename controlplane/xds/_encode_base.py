"""Building blocks the resource encoders share: metadata, ``Any`` packing, ADS config sources.

A plait filter entry becomes the Struct ``{"type", "config", "failStrategy"}``
(:func:`filter_struct_value`): the registry type and the config *as written*
(``FilterEntry.raw_config``), never the parsed config object, so that a control plane whose
registry lacks a sidecar's plugin (``FilterEntry.known`` false) encodes it all the same and the
sidecar parses it with its own registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2, config_source_pb2  # type: ignore[import-untyped]
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from plait.core.config import FilterEntry
from plait.core.xds.wire import METADATA_KEY, to_struct, to_value
from plait.sdk import ConfigError

__all__ = ["ads_source", "filter_fields", "metadata", "pack"]

Message = Any
"""A protobuf message (protobuf ships no type hints)."""


def pack(msg: Message) -> Message:
    """``msg`` wrapped in a ``google.protobuf.Any``."""
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def metadata(facts: Mapping[str, object], where: str) -> Message:
    """``envoy.config.core.v3.Metadata`` with ``facts`` under ``filter_metadata["plait"]``."""
    md = base_pb2.Metadata()
    md.filter_metadata[METADATA_KEY].CopyFrom(_struct(facts, where))
    return md


def ads_source() -> Message:
    """``ConfigSource{ads{}, resource_api_version: V3}``: fetch the resource over the ADS stream."""
    src = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    src.ads.SetInParent()
    return src


def filter_fields(entry: FilterEntry, where: str) -> dict[str, object]:
    """The JSON form of one filter entry: what the sidecar needs to build it again."""
    raw = entry.raw_config
    try:
        to_value(raw, f"{where} config")  # checked here so the error names the filter
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    fields: dict[str, object] = {
        "type": entry.type or entry.spec.name,
        "config": raw,
        "failStrategy": entry.fail_strategy.value,
    }
    if entry.version:
        fields["version"] = entry.version
    return fields


def _struct(facts: Mapping[str, object], where: str) -> Message:
    try:
        return to_struct(facts, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
