"""grafana/treasury.json is an importable dashboard whose every query names metrics the service exports."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from treasury.metrics import RAY_SERVE_METRICS, ShardMetrics, render

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "treasury.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])\d[\d.]*(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*")  # 0.95, 1e3, 5m
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or label names."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or m.group().lower() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def exported_names() -> set[str]:
    """Every sample name the ingress renders (with _total/_bucket/_sum/_count) plus Ray Serve's."""
    text = render([ShardMetrics({"FED_RRP": Decimal(1)}, {"applied": 1}, lag={0: 1}, var_bps={"A": 1.0})],
                  {"SENT": 1}).decode()
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    return names | set(RAY_SERVE_METRICS)


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def test_metric_name_parser_ignores_functions_labels_and_keywords() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{application="a b",le!="1"}[5m]))) '
            '/ on (route) group_left sum without (pod) (y_total offset 5m) > bool 1e3 and z')
    assert metric_names(expr) == {"x_bucket", "y_total", "z"}
    assert metric_names('topk(5, treasury_var_bps{account_id!=""})') == {"treasury_var_bps"}


def test_dashboard_is_valid_and_importable() -> None:
    d = load()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 30
    assert d["uid"] and d["title"]
    [variable] = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    ds_ref = "${" + variable["name"] + "}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    for p in d["panels"]:
        assert p["title"] and p["type"] in ("timeseries", "stat", "gauge", "table")
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["datasource"]["uid"] == ds_ref
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == ds_ref


def test_every_query_names_only_exported_metrics() -> None:
    exported = exported_names()
    used: set[str] = set()
    for p in load()["panels"]:
        for t in p["targets"]:
            names = metric_names(t["expr"])
            assert names, t["expr"]
            assert names <= exported, (p["title"], names - exported)
            used |= names
    # every signal issue 6 asks the dashboard for is on it
    for wanted in ("treasury_swept_usd_total", "treasury_var_bps", "sweep_decision_latency_seconds_bucket",
                   "treasury_orders", "treasury_balance_events_total", "treasury_consumer_lag",
                   *RAY_SERVE_METRICS):
        assert wanted in used, wanted


def test_latency_panels_show_p50_p95_p99() -> None:
    exprs = [t["expr"] for p in load()["panels"] for t in p["targets"]]
    for q in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q},") and "sweep_decision_latency_seconds_bucket" in e
                   for e in exprs), q
