"""The Grafana dashboard: rows Health, Cost and Operations with the panels operators look for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import GRAFANA

DASHBOARDS = sorted(GRAFANA.glob("*.json"))
EXPECTED_ROWS = {
    "Health": ["p95 request latency", "Error rate", "Active requests", "Upstream availability"],
    "Cost": ["Spend by model", "Spend by tenant", "Cache savings", "Tokens per second"],
    "Operations": ["Rate limited", "Cache hit rate", "overhead histogram"],
}


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def rows(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Panels under each row, in order (rows are not collapsed, so panels follow their row)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    current = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            grouped[current] = list(panel.get("panels", []))
        else:
            assert current is not None, f"panel {panel['title']!r} sits above every row"
            grouped[current].append(panel)
    return grouped


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_rows_hold_the_expected_panels(path: Path) -> None:
    grouped = rows(load(path))
    assert list(grouped) == list(EXPECTED_ROWS)
    for row, wanted in EXPECTED_ROWS.items():
        titles = [panel["title"] for panel in grouped[row]]
        for fragment in wanted:
            assert any(fragment.lower() in t.lower() for t in titles), (row, fragment, titles)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_are_well_formed_and_do_not_overlap(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        # Variables used in queries must exist.
        for target in panel["targets"]:
            for name in ("model", "tenant"):
                if f"${name}" in target["expr"]:
                    assert name in variables, (panel["title"], name)
