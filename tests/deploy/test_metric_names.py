"""Alerts and dashboards may only use metrics Sidegate exports (plus Prometheus's `up`).

The exported set comes from the metrics module itself, so renaming a metric there without
updating deploy/ fails here rather than silently blanking a panel or an alert.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sidegate.observability.metrics import METRIC_NAMES, build_metrics
from tests.deploy.manifests import GRAFANA, PROMETHEUS
from tests.deploy.promql import dashboard_expressions, metric_names, rule_expressions

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported_names(registry: CollectorRegistry) -> set[str]:
    names = {"up"}  # set by Prometheus for every scrape target
    for family in registry.collect():
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def referenced() -> dict[str, set[str]]:
    """Metric names by the place that uses them."""
    places: dict[str, set[str]] = {}
    for path in sorted(PROMETHEUS.glob("*.yaml")):
        if path.name in {"alerts_test.yaml", "prometheus.yaml"}:
            continue
        for name, expr in rule_expressions(path):
            places.setdefault(f"{path.name}: {name}", set()).update(metric_names(expr))
    for path in sorted(GRAFANA.glob("*.json")):
        for title, expr in dashboard_expressions(path):
            places.setdefault(f"{path.name}: {title}", set()).update(metric_names(expr))
    return places


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names(build_metrics().registry)


def test_exported_set_holds_the_contract_and_process_metrics(exported: set[str]) -> None:
    assert "llm_requests_total" in exported
    assert "llm_request_duration_seconds_bucket" in exported
    assert "llm_upstream_up" in exported
    assert "process_resident_memory_bytes" in exported
    assert "llm_requests" not in exported  # the counter exports only with _total


def test_alerts_and_dashboards_use_only_exported_metrics(exported: set[str]) -> None:
    places = referenced()
    assert any(p.startswith("alerts.yaml") for p in places)
    assert any(p.endswith(".json: Cache hit rate") for p in places)
    unknown = {place: sorted(names - exported) for place, names in places.items()}
    assert {place: names for place, names in unknown.items() if names} == {}


def test_dashboards_show_every_contract_metric() -> None:
    used = set().union(
        *(
            metric_names(expr)
            for path in GRAFANA.glob("*.json")
            for _, expr in dashboard_expressions(path)
        )
    )
    missing = [
        name
        for name in METRIC_NAMES
        if not any(u == name or u.startswith(f"{name}_") for u in used)
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "histogram_quantile(0.95, sum by (model, le) "
            '(rate(llm_request_duration_seconds_bucket{model=~"$model"}[$__rate_interval])))',
            {"llm_request_duration_seconds_bucket"},
        ),
        (
            "sum by (tenant) (increase(llm_cost_usd_total[1h])) > 3 * sum by (tenant) "
            "(increase(llm_cost_usd_total[1d] offset 1h)) / 24 and on (tenant) up == 1",
            {"llm_cost_usd_total", "up"},
        ),
        ('absent(up{job="sidegate"})', {"up"}),
        ("process_resident_memory_bytes > 900 * 1024 * 1e3", {"process_resident_memory_bytes"}),
        ("label_values(llm_requests_total, tenant)", {"llm_requests_total"}),
        ("count(max by (upstream) (llm_upstream_up) == 0) or vector(0)", {"llm_upstream_up"}),
        ('sum(rate(llm_typo_total{status=~"5.."}[5m]))', {"llm_typo_total"}),
    ],
)
def test_metric_names_are_found_in_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_metric_sidegate_does_not_export_is_caught(exported: set[str]) -> None:
    names = metric_names('sum by (tenant) (rate(llm_request_total{status="200"}[5m]))')
    assert names - exported == {"llm_request_total"}
