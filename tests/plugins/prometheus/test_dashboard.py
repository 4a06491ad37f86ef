"""The Grafana dashboard and docs/metrics.md name only metrics the plugin exposes, and the docs name them all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from servegate.plugins.prometheus import families as fam

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "dashboards" / "servegate-grafana.json"
DOC = ROOT / "docs" / "metrics.md"
NAME = re.compile(r"\b((?:kong|gen_ai|servegate)_[a-z_]*[a-z])\b(?!\*)")
LABELS = {label for f in fam.ALL.values() for label in f.labels}


def _names(text: str) -> set[str]:
    """Metric-looking names in `text`, label names (gen_ai_request_model) left out."""
    return {m for m in NAME.findall(text) if m not in LABELS}


def _family(series: str) -> str | None:
    """The family a series name belongs to (histograms' _bucket, _sum and _count)."""
    if series in fam.ALL:
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series[: -len(suffix)] in fam.ALL:
            return series[: -len(suffix)]
    return None


def _queries(dash: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    out += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return out


def test_dashboard_queries_name_exposed_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    queries = _queries(dash)
    used = {m for q in queries for m in _names(q)}
    assert used and all(_family(m) for m in used), sorted(m for m in used if not _family(m))
    families = {_family(m) for m in used}
    # the panels the dashboard promises: RPS by status, latency quantiles, TTFT/TPOT by model, tokens by model
    # and type, streams in flight, aborts, upstream target health
    for name in ("kong_http_requests_total", "kong_request_latency_ms", "gen_ai_server_time_to_first_token_seconds",
                 "gen_ai_server_time_per_output_token_seconds", "gen_ai_client_token_usage",
                 "servegate_llm_streams_in_flight", "servegate_llm_client_aborts_total", "kong_upstream_target_health"):
        assert name in families, name
    assert any("histogram_quantile(0.99" in q for q in queries)
    # every panel reads the data source the user picks
    (ds,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
            assert all(t["refId"] for t in panel["targets"])


def test_docs_list_every_metric_and_nothing_else() -> None:
    text = DOC.read_text()
    named = _names(text)
    assert all(_family(m) for m in named), sorted(m for m in named if not _family(m))
    for name in fam.ALL:
        assert f"`{name}`" in text, name
