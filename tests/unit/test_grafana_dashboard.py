"""The Grafana dashboard (`deploy/grafana/`): valid, and only about metrics the API exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "ringwatch-dashboard.json"
# The metrics the API serves at /metrics (ringwatch/service/metrics.py), with their kind.
METRICS = {
    "ringwatch_http_request_duration_seconds": "histogram",
    "ringwatch_ingest_events_total": "counter",
    "ringwatch_ingest_consumer_lag": "gauge",
    "ringwatch_alerts_total": "counter",
    "ringwatch_risk_score": "histogram",
    "ringwatch_drift_ks_statistic": "gauge",
    "ringwatch_drift_alert_rate_ratio": "gauge",
}
LABELS = {
    "ringwatch_http_request_duration_seconds": {"method", "route", "status", "le"},
    "ringwatch_ingest_events_total": {"family", "outcome"},
    "ringwatch_ingest_consumer_lag": {"topic", "partition"},
    "ringwatch_alerts_total": {"priority"},
    "ringwatch_risk_score": {"le"},
}
_SERIES = re.compile(r"\bringwatch_[a-z_]+")


def _base_metric(series: str) -> str | None:
    """The metric a series name belongs to (histograms add _bucket, _sum and _count)."""
    if series in METRICS:
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base) == "histogram":
            return base
    return None


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return panels


def test_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panel_ids_are_unique_and_panels_fit_the_grid(dashboard: dict[str, Any]) -> None:
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_queries_the_prometheus_variable(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"panel '{panel['title']}' has no query"


def test_every_expression_uses_only_metrics_the_api_exposes(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            series = _SERIES.findall(expr)
            assert series, f"'{panel['title']}' queries no ringwatch metric: {expr}"
            bases = {_base_metric(name) for name in series}
            assert None not in bases, f"'{panel['title']}' uses an unknown metric: {expr}"
            used.update(base for base in bases if base is not None)
            # Matchers ({status=~"5.."}) and groupings (by (route)) name labels they have.
            known = set().union(*(LABELS.get(base, set()) for base in bases if base))
            named = set(re.findall(r"(\w+)\s*=~?\s*\"", expr))
            for grouping in re.findall(r"by \(([^)]*)\)", expr):
                named.update(label.strip() for label in grouping.split(","))
            assert named <= known, f"'{panel['title']}': no such label {named - known}"
    assert used == set(METRICS), f"metrics without a panel: {set(METRICS) - used}"


def test_provisioning_files_are_valid_yaml() -> None:
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yaml").read_text())
    assert dashboards["providers"][0]["type"] == "file"
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
