"""The report's headline metrics come from what metrics declare (stored in config.json),
and runs stored before that render as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from recbench.registry import discover
from recbench.report.metric_display import STORED_BEFORE_DISPLAY, MetricDisplay
from recbench.report.render import render
from recbench.results import RunDirectory

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "report-run"


def test_the_built_in_metrics_declare_what_runs_stored_before_the_display_assumed():
    registry = discover()
    for metric_id, stored in STORED_BEFORE_DISPLAY.items():
        info = registry.get("metric", metric_id)
        assert {"headline": info.headline, "count": info.count} == stored, metric_id


def test_a_stored_display_orders_the_headline_metrics():
    display = MetricDisplay.of(
        {
            "metrics": {"sps": {}, "mine": {}, "recall": {}},
            "metric_display": {
                "sps": {"headline": 1, "count": False},
                "mine": {"headline": 0, "count": True},
                "recall": {"headline": None, "count": False},
            },
        }
    )
    assert display.headlines() == ["mine", "sps"]
    assert display.headlines(present={"sps", "recall"}) == ["sps"]
    assert display.is_count("mine") and not display.is_count("sps")
    assert sorted(["recall", "sps", "mine"], key=display.rank) == ["mine", "sps", "recall"]


def test_a_run_stored_without_a_display_uses_its_own_metrics_only():
    display = MetricDisplay.of({"metrics": {"recall": {}, "mrr": {}, "item_coverage": {}}})
    assert display.headlines() == ["recall", "mrr"]  # no rating metric slips in
    assert display.is_count("item_coverage")


def test_a_declared_headline_metric_leads_the_report(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    before = render(RunDirectory.open(run))
    config_file = run / "config.json"
    stored = json.loads(config_file.read_text())
    metrics = stored["config"]["metrics"]
    # what a run stores today: the same display as the built-in metrics declare ...
    stored["config"]["metric_display"] = {
        m: dict(STORED_BEFORE_DISPLAY.get(m, {})) for m in metrics
    }
    config_file.write_text(json.dumps(stored))
    assert render(RunDirectory.open(run)) == before
    # ... and a metric declared first becomes the summary's and the order check's first
    stored["config"]["metric_display"]["ndcg"]["headline"] = -1
    config_file.write_text(json.dumps(stored))
    after = render(RunDirectory.open(run))
    summary = after.split("\n## ")[0]
    assert "ndcg@" in summary and "sps@" not in summary
    order_check = after.split("## Order check")[1].split("\n## ")[0]
    assert order_check.index("ndcg@") < order_check.index("sps@")
