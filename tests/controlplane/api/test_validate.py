"""Validation on write: the candidate set, creation order, per-Sidecar translation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plait.controlplane._validate import candidate_set, key_of, plan
from plait.controlplane.store import Key, StoredResource
from plait.core.config import parse_text
from plait.plugins import load_filter_types
from plait.sdk import ConfigError

TYPES = load_filter_types()

SERVICE = {
    "apiVersion": "plait.dev/v1alpha1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"ports": [{"port": 8080}]},
}


def sidecar(name: str, target: str) -> str:
    return (
        f"apiVersion: plait.dev/v1alpha1\nkind: Sidecar\nmetadata: {{name: {name}}}\n"
        f"spec:\n  egress:\n  - {{name: out, port: {{number: 18080}}, service: {target}}}\n"
    )


def stored(*docs: dict[str, Any]) -> list[StoredResource]:
    out = []
    for i, d in enumerate(docs, start=1):
        key = key_of(parse_text(json.dumps(d), "x")[0])
        out.append(StoredResource(key=key, document=d, create_revision=i, mod_revision=i))
    return out


def test_every_sidecar_is_checked_against_the_candidate_set() -> None:
    with pytest.raises(ConfigError, match=r"^s.yaml:\d+: Sidecar/b: .*unknown Service default/api"):
        plan(
            stored(SERVICE),
            TYPES,
            puts=parse_text(sidecar("a", "web") + "---\n" + sidecar("b", "api"), "s.yaml"),
        )
    ok = plan(stored(SERVICE), TYPES, puts=parse_text(sidecar("a", "web"), "s.yaml"))
    assert [key_of(p) for p in ok.puts] == [Key("Sidecar", "default", "a")]


def test_a_stored_document_the_write_breaks_is_named_by_its_store_key() -> None:
    side = parse_text(sidecar("a", "web"), "s.yaml")[0].document
    with pytest.raises(ConfigError, match=r"^store:Sidecar/default/a:1: Sidecar/a: "):
        plan(stored(SERVICE, dict(side)), TYPES, deletes=[Key("Service", "default", "web")])


def test_deleting_what_is_not_stored_is_reported_not_refused() -> None:
    p = plan(stored(SERVICE), TYPES, deletes=[Key("Service", "default", "gone")])
    assert p.deletes == () and p.missing == (Key("Service", "default", "gone"),)


def test_an_update_replaces_the_stored_document() -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"kind": "Service", "name": "web"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}],
        },
    }
    changed = json.loads(json.dumps(route))
    changed["spec"]["rules"][0]["backendRefs"][0]["weight"] = 2
    p = plan(stored(SERVICE, route), TYPES, puts=parse_text(json.dumps(changed), "r.yaml"))
    assert p.puts[0].document["spec"]["rules"][0]["backendRefs"][0]["weight"] == 2


def test_the_candidate_set_keeps_creation_order_and_updates_keep_their_place() -> None:
    other = json.loads(json.dumps(SERVICE))
    other["metadata"]["name"] = "api"
    older, newer = stored(SERVICE, other)
    changed = json.loads(json.dumps(SERVICE))
    changed["spec"]["ports"][0]["port"] = 9090
    new = json.loads(json.dumps(SERVICE))
    new["metadata"]["name"] = "db"
    puts = parse_text(json.dumps(new) + "\n---\n" + json.dumps(changed), "p.yaml")
    docs = candidate_set([newer, older], puts)
    assert [d.meta.name for d in docs] == ["web", "api", "db"]
    assert (
        docs[0].meta.loc.file == "p.yaml" and docs[1].meta.loc.file == "store:Service/default/api"
    )
