"""What the CLI prints for API answers (pure functions, no server)."""

from __future__ import annotations

from plait.controlplane.api._tables import (
    render_check,
    render_documents,
    render_results,
    render_table,
)


def _workload(name: str, status: dict[str, object] | None = None) -> dict[str, object]:
    doc: dict[str, object] = {
        "kind": "Workload",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"service": "web", "address": "10.0.0.7"},
    }
    if status is not None:
        doc["status"] = status
    return doc


def test_workload_table_shows_the_registry_status() -> None:
    nack = {"type": "Listener", "version": "v3", "message": "bad filter", "at": 1.0}
    text = render_table("Workload", [
        _workload("web-1", {"connected": True, "ackedVersions": {"Listener": "v2",
                                                                 "Cluster": "v2"}}),
        _workload("web-2", {"connected": False, "healthy": False, "ackedVersion": "v1",
                            "lastNack": nack}),
        _workload("web-3"),
        _workload("by-hand", {"registered": False, "healthy": True}),
    ])  # fmt: skip
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "NAMESPACE", "SERVICE", "ADDRESS", "CONNECTED", "HEALTHY",
                                "ACKED", "LAST-NACK"]  # fmt: skip
    assert lines[1].split() == ["web-1", "shop", "web", "10.0.0.7", "yes", "-", "v2", "-"]
    assert lines[2].split()[4:] == ["no", "no", "v1", "Listener:", "bad", "filter"]
    assert lines[3].split()[4:] == ["-", "-", "-", "-"]
    assert lines[4].split()[4:] == ["-", "yes", "-", "-"]


def test_results_and_documents() -> None:
    assert render_results([
        {"kind": "Service", "namespace": "default", "name": "web", "result": "created"},
        {"kind": "HTTPRoute", "namespace": "shop", "name": "r", "result": "unchanged"},
    ]) == "service/web created\nhttproute/r unchanged (namespace shop)\n"  # fmt: skip
    two: list[dict[str, object]] = [{"kind": "Service", "metadata": {"name": "a"}}, {"kind": "S"}]
    assert render_documents(two, "yaml").count("---") == 1
    assert render_documents(two[:1], "json").startswith('{\n  "kind": "Service"')


def test_check_report_lists_sidecars_and_problems() -> None:
    text = render_check({
        "ok": False, "resources": 3, "revision": 7, "warnings": ["w"],
        "problems": ["web-1: disconnected"],
        "sidecars": [{"node": "web-1", "connected": False, "problems": ["disconnected"]}],
    })  # fmt: skip
    assert text.splitlines()[0] == "config: PROBLEMS (3 resources, revision 7)"
    assert "warning: w" in text and "problem: web-1: disconnected" in text
    assert any(line.split()[:2] == ["web-1", "no"] for line in text.splitlines())


def test_filter_table_shows_the_python_type_or_the_wasm_modules_hash() -> None:
    docs = [
        {"kind": "Filter", "metadata": {"name": "py", "namespace": "shop"},
         "spec": {"python": {"type": "example-stamp"}}},
        {"kind": "Filter", "metadata": {"name": "auth", "namespace": "shop"},
         "spec": {"wasm": {"url": "a.wasm", "sha256": "4f3c" + "0" * 60}}},
    ]  # fmt: skip
    lines = render_table("Filter", docs).splitlines()
    assert lines[1].split() == ["py", "shop", "example-stamp"]
    assert lines[2].split() == ["auth", "shop", "wasm", "sha256:4f3c00000000"]
