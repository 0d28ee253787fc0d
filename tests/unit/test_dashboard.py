"""``deploy/grafana/kafka-jetstream-bridge.json``: well-formed Grafana dashboard JSON, and every metric its
queries name is served by ``/metrics`` (the real HTTP handler over a pipeline snapshot), Redpanda Connect's
standard names among them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bridge.ops.connect_metrics import NAMES
from tests.support import exposed
from tests.unit.test_metrics import READY, STATS, FakePipeline, client_for

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kafka-jetstream-bridge.json"

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions (followed by
    ``(``), keywords, label names in ``by (...)`` / ``{...}``, strings or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", expr):
        rest = expr[match.end() :].lstrip()
        if not rest.startswith("(") and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def test_metric_names_of_an_expression() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))) / 1e6'
    ) == {"a_bucket"}
    assert metric_names('sum(rate(x{q="y z"}[5m])) + on (pod) b unless c') == {"x", "b", "c"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # well-formed JSON, or this fails


def queries(dash: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append(re.sub(r"^label_values\((\w+),.*\)$", r"\1", var["definition"]))
    return out


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = dashboard()
    assert dash["title"]
    assert dash["uid"]
    assert isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dash["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            # summed (or maxed) over series: the same with one process, --workers N or many replicas
            assert re.match(r"(sum|max|histogram_quantile)\b", target["expr"]), target["expr"]


async def test_every_metric_the_dashboard_queries_is_served() -> None:
    client = await client_for(FakePipeline(STATS, READY))
    try:
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    served = {name for name, _ in exposed(text)}  # the names Prometheus stores
    wanted = set().union(*(metric_names(q) for q in queries(dashboard())))
    assert wanted
    assert wanted <= served, sorted(wanted - served)
    assert set(NAMES) <= wanted  # Redpanda Connect's standard names all have a panel
