"""Every config under examples/ loads against the real filter registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import MeshConfig, Protocol, load_config, load_documents
from plait.plugins import FilterTypes, load_filter_types

EXAMPLES = Path(__file__).parents[2] / "examples"
FILES = sorted(EXAMPLES.rglob("*.yaml")) + sorted(EXAMPLES.rglob("*.yml"))


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _sidecars(path: Path) -> list[str | None]:
    names = [s.meta.name for s in load_documents([path]).sidecars]
    return names or [None]  # type: ignore[return-value]


def test_there_are_examples() -> None:
    assert len(FILES) >= 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_loads(path: Path, types: FilterTypes) -> None:
    for sidecar in _sidecars(path):
        cfg = load_config([path], types, sidecar=sidecar)
        assert cfg.listeners, f"{path} ({sidecar}) has no listeners"
        for lis in cfg.listeners:
            if lis.protocol is Protocol.TCP:
                assert lis.tcp_cluster in cfg.clusters
            else:
                assert lis.route_table in cfg.routes


def _demo(types: FilterTypes, sidecar: str) -> MeshConfig:
    return load_config([EXAMPLES / "demo/mesh.yaml"], types, sidecar=sidecar)


def test_demo_ports_and_split(types: FilterTypes) -> None:
    frontend, backend = _demo(types, "frontend"), _demo(types, "backend")
    assert (frontend.admin.port, backend.admin.port) == (15000, 15100)
    for cfg in (frontend, backend):
        for lis in cfg.listeners:
            assert 18000 <= lis.port <= 18999 and lis.bind == "127.0.0.1"
    split = frontend.routes["backend.default:8080"].rules[-1]
    assert [(b.cluster, b.weight) for b in split.backends] == [
        ("backend-v1.default:8080", 90),
        ("backend-v2.default:8080", 10),
    ]
    ingress = [f.spec.name for lis in backend.listeners for f in lis.filters]
    assert ingress.count("path-deny") == 2
