"""The layout shows the dependency direction (style rule 1), checked on every import.

plait.sdk           depends on no other plait package
plait.plugins       depends on plait.sdk only
plait.core          depends on plait.sdk and plait.plugins; never names a filter
plait.filters       depends on plait.sdk and plait.plugins (registration) only
plait.controlplane  reaches core only through its config model (plait.core.config), the
                    xDS wire contract (plait.core.xds.wire) and the identity contracts it
                    shares with the sidecar: the CA's renewal proof (plait.core.identity.proof)
                    and the trust at first contact (plait.core.identity.bootstrap: the
                    token's root pin, a context that trusts a bundle)

No package imports another package's private (``_name``) module. The import-linter contracts
in pyproject.toml (run by scripts/lint.sh) state the same layers and add the finer rules
(the core's sub-packages, no cycles); the last test here keeps the two tables in step.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"sdk": "plait.sdk", "plugins": "plait.plugins", "core": "plait.core",
            "filters": "plait.filters", "controlplane": "plait.controlplane"}  # fmt: skip
ALLOWED = {
    "plait.sdk": {"plait.sdk"},
    "plait.plugins": {"plait.sdk", "plait.plugins"},
    "plait.core": {"plait.sdk", "plait.plugins", "plait.core"},
    "plait.filters": {"plait.sdk", "plait.plugins", "plait.filters"},
    "plait.controlplane": {
        "plait.sdk",
        "plait.plugins",
        "plait.controlplane",
        "plait.core.config",
        "plait.core.xds.wire",
        "plait.core.identity.proof",
        "plait.core.identity.bootstrap",
    },
}


def _module_name(path: Path, top: str) -> str:
    rel = path.relative_to(ROOT / top).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGES[top], *parts])


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "plait" or name.startswith("plait.")}


EXAMPLES = ROOT / "sdk" / "examples"
"""Filters written as a user writes them (on plait.sdk, plait.plugins): not part of plait."""


def _files() -> list[tuple[str, Path]]:
    return [
        (top, p)
        for top in PACKAGES
        for p in sorted((ROOT / top).rglob("*.py"))
        if EXAMPLES not in p.parents
    ]


# ``plait demo`` runs everything (architecture.md §1): it may reuse the static demo's apps.
EXCEPTIONS = {"plait.controlplane.demo": {"plait.core.ops.demo"}}


@pytest.mark.parametrize(("top", "path"), _files(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_imports_follow_the_dependency_direction(top: str, path: Path) -> None:
    package = PACKAGES[top]
    module = _module_name(path, top)
    for imported in _imports(path, module) - EXCEPTIONS.get(module, set()):
        assert any(imported == a or imported.startswith(a + ".") for a in ALLOWED[package]), (
            f"{module} imports {imported}; {package} may import only {sorted(ALLOWED[package])}"
        )


@pytest.mark.parametrize(("top", "path"), _files(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_no_private_module_of_another_package_is_imported(top: str, path: Path) -> None:
    package = PACKAGES[top]
    module = _module_name(path, top)
    for imported in _imports(path, module) - EXCEPTIONS.get(module, set()):
        if imported == package or imported.startswith(package + "."):
            continue
        private = [part for part in imported.split(".") if part.startswith("_")]
        assert not private, f"{module} imports {imported}, a private module of another package"


def test_the_core_never_names_a_builtin_filter() -> None:
    names: tuple[str, ...] = ("request-header-modifier", "response-header-modifier", "path-deny")
    names += ("circuit-breaker", "load-balancer")  # ("retry" is also a config key)
    for path in sorted((ROOT / "core").rglob("*.py")):
        if path.parent.name == "config":
            continue  # the translator maps Gateway API filter types to registry names
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text, f"{path} names the filter {name}"


def test_sdk_public_surface_is_pinned() -> None:
    import plait.sdk

    assert set(plait.sdk.__all__) == {
        "CONTINUE", "HOOK_NAMES", "BodyTooLarge", "Buffer", "BufferedBody", "CallNext",
        "ConfigError",
        "ConnectionContext", "ConnectionFilter", "Continue", "DownstreamProtocolError",
        "FailStrategy", "FilterError", "FilterRegistry", "FilterResult", "FilterSpec",
        "HeaderPairs", "Headers",
        "HeadersTooLarge", "HttpFilter", "LocalReply", "MessageBody", "NoHealthyUpstream",
        "NoRoute", "PassThroughFilter", "PeerIdentity", "PlaitError", "RequestHead",
        "RequestTimeout", "ResponseHead", "Stash", "StashKey", "StreamContext",
        "UpstreamConnectError", "UpstreamError", "UpstreamRequest", "UpstreamReset",
        "UpstreamResponse", "UpstreamTimeout", "EndpointInfo", "UpstreamCluster",
        "HookResult",
        # upstream layers as policies (sdk/_policy.py)
        "Pending", "TryAgain", "TryOutcome",
        # workload identities (sdk/_spiffe.py)
        "SpiffeId", "InvalidSpiffeId", "DEFAULT_TRUST_DOMAIN",
    }  # fmt: skip
    for name in plait.sdk.__all__:
        assert hasattr(plait.sdk, name)


def test_the_import_linter_layers_are_this_table() -> None:
    """pyproject's top-level layers contract says what ALLOWED says: a package may import
    only packages of lower layers, never one of its own layer or above."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert sorted(config["root_packages"]) == sorted(PACKAGES.values())
    (layers,) = [
        c["layers"] for c in config["contracts"] if c["type"] == "layers" and "containers" not in c
    ]
    layer_of = {p.strip(): i for i, layer in enumerate(layers) for p in layer.split("|")}
    assert sorted(layer_of) == sorted(PACKAGES.values())
    for package, allowed in ALLOWED.items():
        for other in allowed - {package}:
            top = next(p for p in PACKAGES.values() if other == p or other.startswith(p + "."))
            assert layer_of[top] > layer_of[package], f"{package} may import {other}"
