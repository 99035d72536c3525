"""Metric names referenced by PromQL expressions and Grafana dashboards.

Not a PromQL parser: it removes what cannot hold a metric name (strings, label matchers, range
selectors, grouping clauses, numbers and durations) and keeps the identifiers that are not
functions, aggregations or keywords. Enough for the expressions we write, and tested on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_LABEL_VALUES = re.compile(r"\blabel_values\(\s*([^,()]+(?:\{[^}]*\})?)\s*,\s*\w+\s*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    expr = _LABEL_VALUES.sub(r"\1", expr)
    expr = _STRINGS.sub(" ", expr)
    expr = _MATCHERS.sub(" ", expr)
    expr = _RANGES.sub(" ", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        name = match.group(0)
        followed_by_call = expr[match.end() :].lstrip().startswith("(")
        if not followed_by_call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def rule_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(rule name, expression) for every alerting and recording rule in a rule file."""
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(panel or variable title, query) for every PromQL query in a Grafana dashboard."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield f"${variable['name']}", query["query"] if isinstance(query, dict) else query


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))
