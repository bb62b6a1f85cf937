"""The sidecar's /metrics text, read back by prometheus-client's own parser.

core/metrics.py renders the Prometheus text format (0.0.4) itself; these tests
check that what a Prometheus server would read is what was recorded, including
label values that need escaping.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plait.core.mesh_labels import MESH_LABELS
from plait.core.metrics import BUCKETS, Stats
from plait.sdk import metrics


def _samples(stats: Stats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(stats.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(stats: Stats, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (as PromQL's ``sum``)."""
    want = set(labels.items())
    return sum(v for (n, got), v in _samples(stats).items() if n == name and want <= set(got))


MESH = ("out", "outbound", "source", "web", "shop", "spiffe://t/ns/shop/sa/web",
        "unknown", "shop", "spiffe://t/ns/shop/sa/api", "api", "shop", "v2")  # fmt: skip


def test_recorded_requests_and_durations_read_back_with_their_mesh_labels() -> None:
    stats = Stats()
    series = stats.series_of(MESH)
    assert stats.series_of(MESH) == series  # interned: one series per label set
    stats.observe(series, 200, "", "", 0.002)
    stats.observe(series, 200, "", "", 0.02)
    stats.observe(series, 503, "", "upstream connect failure", 0.3)
    stats.observe(series, 200, "14", "", 0.001)
    labels = dict(zip(MESH_LABELS, MESH, strict=True))
    total = "plait_requests_total"
    assert _sum(stats, total, code="200", reason="", grpc_response_status="", **labels) == 2
    assert _sum(stats, total, code="503", reason="upstream connect failure", **labels) == 1
    assert _sum(stats, total, grpc_response_status="14") == 1
    assert _sum(stats, total, listener="out") == 4
    count = "plait_request_duration_seconds_count"
    assert _sum(stats, count, **labels) == 4
    assert _sum(stats, count, code="200") == 3
    assert abs(_sum(stats, "plait_request_duration_seconds_sum", **labels) - 0.323) < 1e-9
    ok = {**labels, "code": "200", "grpc_response_status": ""}
    buckets = {
        dict(got)["le"]: v
        for (name, got), v in _samples(stats).items()
        if name == "plait_request_duration_seconds_bucket" and set(ok.items()) <= set(got)
    }
    assert len(buckets) == len(BUCKETS) + 1
    assert buckets["0.001"] == 0 and buckets["0.0025"] == 1 and buckets["0.025"] == 2
    assert buckets["+Inf"] == 2


def test_each_request_counts_under_its_own_labels_whatever_came_before() -> None:
    stats = Stats()
    web, api = stats.series_of(MESH), stats.series_of(("in", *MESH[1:]))
    order = [
        (web, 200, "", ""), (web, 200, "", ""), (api, 200, "", ""), (web, 200, "", ""),
        (web, 200, "14", ""), (web, 200, "", "x"), (web, 503, "", "x"), (web, 200, "", ""),
    ]  # fmt: skip
    for series, code, grpc, reason in order:
        stats.observe(series, code, grpc, reason, 0.001)
    total = "plait_requests_total"
    assert _sum(stats, total, listener="out", code="200", grpc_response_status="", reason="") == 4
    assert _sum(stats, total, listener="in") == 1
    assert _sum(stats, total, grpc_response_status="14") == 1
    assert _sum(stats, total, code="200", reason="x") == 1
    assert _sum(stats, total, code="503") == 1


def test_requests_sum_across_workers_by_their_labels() -> None:
    one, two, supervisor = Stats(), Stats(), Stats()
    two.series_of(("other", *MESH[1:]))  # the same labels get other numbers in each worker
    for stats in (one, two):
        stats.observe(stats.series_of(MESH), 200, "", "", 0.004)
    two.observe(two.series_of(MESH), 404, "", "no route", 0.001)
    supervisor.add_json(one.to_json())
    supervisor.add_json(two.to_json())
    assert _sum(supervisor, "plait_requests_total", listener="out", code="200") == 2
    assert _sum(supervisor, "plait_requests_total", reason="no route") == 1
    assert _sum(supervisor, "plait_request_duration_seconds_count", destination_version="v2") == 3


def test_a_request_refused_before_its_exchange_has_its_listener_and_unknowns() -> None:
    stats = Stats()
    stats.record("in", 400, 0.0, "bad request")
    (labels,) = [dict(got) for name, got in _samples(stats) if name == "plait_requests_total"]
    assert labels["listener"] == "in" and labels["code"] == "400"
    assert labels["reason"] == "bad request" and labels["source_principal"] == "unknown"


def test_label_values_are_escaped() -> None:
    stats = Stats()
    tricky = 'a "quoted" \\ back\nslash é'
    stats.record("out", 500, 0.001, tricky)
    stats.filter_failed(tricky)
    stats.upstream_added[("c", tricky)] = 4
    samples = _samples(stats)
    assert _sum(stats, "plait_requests_total", code="500", listener="out", reason=tricky) == 1
    assert samples[("plait_filter_failures_total", (("filter", tricky),))] == 1
    assert samples[("plait_upstream_events_total", (("cluster", "c"), ("event", tricky)))] == 4


def test_gauges_and_large_values() -> None:
    stats = Stats()
    stats.connection_opened("in")
    stats.connection_opened("in")
    stats.connection_closed("in")
    stats.config_version = "v1"
    stats.config_timestamp = 1.7e9
    stats.reloads["ok"] = 3
    samples = _samples(stats)
    assert samples[("plait_connections_active", (("listener", "in"),))] == 1
    assert samples[("plait_connections_total", (("listener", "in"),))] == 2
    assert samples[("plait_config_info", (("version", "v1"),))] == 1.7e9
    assert samples[("plait_config_reloads_total", (("result", "ok"),))] == 3
    assert samples[("plait_config_age_seconds", ())] > 0


def test_http2_connection_errors_are_counted_and_summed_across_workers() -> None:
    one, two = Stats(), Stats()
    one.http2_error("rapid_reset")
    two.http2_error("rapid_reset")
    two.http2_error("flow_control_error")
    one.add_json(two.to_json())
    samples = _samples(one)
    name = "plait_http2_connection_errors_total"
    assert samples[(name, (("reason", "rapid_reset"),))] == 2
    assert samples[(name, (("reason", "flow_control_error"),))] == 1


def test_inbound_transports_and_refusals_are_counted_and_summed_across_workers() -> None:
    one, two = Stats(), Stats()
    one.inbound_accepted("in", "mtls")
    two.inbound_accepted("in", "mtls")
    two.inbound_accepted("in", "plaintext")
    one.inbound_refusal("in", "unknown_ca")
    two.inbound_refusal("in", "unknown_ca")
    two.inbound_refusal("in", "plaintext")
    one.add_json(two.to_json())
    samples = _samples(one)
    accepted = "plait_inbound_connections_total"
    assert samples[(accepted, (("listener", "in"), ("transport", "mtls")))] == 2
    assert samples[(accepted, (("listener", "in"), ("transport", "plaintext")))] == 1
    refused = "plait_inbound_mtls_refused_total"
    assert samples[(refused, (("listener", "in"), ("reason", "unknown_ca")))] == 2
    assert samples[(refused, (("listener", "in"), ("reason", "plaintext")))] == 1


def test_certificate_metrics_render_and_combine_across_workers() -> None:
    one, two, none = Stats(), Stats(), Stats()
    one.identity_source = lambda: {"expiry_seconds": 1800.5, "generation": 3.0,
                                   "ok": 3.0, "error": 1.0}  # fmt: skip
    two.identity_source = lambda: {"expiry_seconds": 900.0, "generation": 2.0,
                                   "ok": 2.0, "error": 0.0}  # fmt: skip
    alone = _samples(one)
    assert alone[("plait_cert_expiry_seconds", ())] == 1800.5
    assert alone[("plait_cert_generation", ())] == 3
    assert alone[("plait_cert_renewals_total", (("result", "ok"),))] == 3
    assert alone[("plait_cert_renewals_total", (("result", "error"),))] == 1
    # a supervisor sums the workers' counts; the stalest worker's expiry and generation show
    none.add_json(one.to_json())
    none.add_json(two.to_json())
    summed = _samples(none)
    assert summed[("plait_cert_expiry_seconds", ())] == 900.0
    assert summed[("plait_cert_generation", ())] == 2
    assert summed[("plait_cert_renewals_total", (("result", "ok"),))] == 5
    assert summed[("plait_cert_renewals_total", (("result", "error"),))] == 1


def test_no_certificate_metrics_without_an_identity() -> None:
    stats = Stats()
    stats.identity_source = dict  # a sidecar without an identity source reports nothing
    assert not any(name.startswith("plait_cert_") for name, _ in _samples(stats))
    pending = Stats()  # the agent is waiting for its first certificate: no expiry yet
    pending.identity_source = lambda: {"generation": 0.0, "ok": 0.0, "error": 2.0}
    samples = _samples(pending)
    assert ("plait_cert_expiry_seconds", ()) not in samples
    assert samples[("plait_cert_renewals_total", (("result", "error"),))] == 2


def test_filter_instruments_render_and_sum_across_workers() -> None:
    audited = metrics.counter("test_stats_audited_total", 'Audited "requests"', ("policy",))
    level = metrics.gauge("test_stats_level", "A level")
    audited.inc("ns/a")
    audited.inc("ns/a")
    audited.inc('ns/"b"\n')
    level.set(4.5)
    alone = _samples(Stats())
    assert alone[("test_stats_audited_total", (("policy", "ns/a"),))] == 2
    assert alone[("test_stats_audited_total", (("policy", 'ns/"b"\n'),))] == 1
    assert alone[("test_stats_level", ())] == 4.5
    # a supervisor (whose own instruments are empty) sums what each worker reports
    worker = Stats().to_json()
    supervisor = Stats()
    supervisor.add_json(worker)
    supervisor.add_json(worker)
    summed = _samples(supervisor)
    assert summed[("test_stats_audited_total", (("policy", "ns/a"),))] == 2 * 2 + 2
    assert summed[("test_stats_level", ())] == 3 * 4.5


def test_a_filter_cannot_take_a_sidecar_metric_name() -> None:
    with pytest.raises(ValueError, match="sidecar's own metrics"):
        metrics.counter("plait_requests_total", "clash")


def test_filter_histograms_render_and_sum_across_workers() -> None:
    waits = metrics.histogram("test_stats_wait_ms", "Waits", ("route",), (1, 10))
    for value in (0.5, 3, 3, 50):
        waits.observe(value, "a")
    alone = _samples(Stats())
    bucket = "test_stats_wait_ms_bucket"
    assert alone[(bucket, (("le", "1.0"), ("route", "a")))] == 1
    assert alone[(bucket, (("le", "10.0"), ("route", "a")))] == 3
    assert alone[(bucket, (("le", "+Inf"), ("route", "a")))] == 4
    assert alone[("test_stats_wait_ms_count", (("route", "a"),))] == 4
    assert alone[("test_stats_wait_ms_sum", (("route", "a"),))] == 56.5
    supervisor = Stats()
    supervisor.add_json(Stats().to_json())
    summed = _samples(supervisor)  # the supervisor's own instruments plus one worker's
    assert summed[(bucket, (("le", "10.0"), ("route", "a")))] == 6
    assert summed[("test_stats_wait_ms_count", (("route", "a"),))] == 8


def test_ejected_endpoints_gauge_sums_across_workers() -> None:
    one, two, supervisor = Stats(), Stats(), Stats()
    one.ejected_source = lambda: {"api": 1, "web": 0}
    two.ejected_source = lambda: {"api": 2}
    assert _samples(one)[("plait_upstream_endpoints_ejected", (("cluster", "api"),))] == 1
    supervisor.add_json(one.to_json())
    supervisor.add_json(two.to_json())
    samples = _samples(supervisor)
    assert samples[("plait_upstream_endpoints_ejected", (("cluster", "api"),))] == 3
    assert samples[("plait_upstream_endpoints_ejected", (("cluster", "web"),))] == 0
