"""Markdown benchmark reports, rendered from a run directory's result files alone.

One skeleton serves every task. The report states what was measured, how, and how sure
we are, in this order: a title and a one-paragraph summary; the environment; dataset
statistics; the protocol; the models' losses and changed options (when there are any); the
results; what the task shows after them (for ranking: option sweeps and the order check);
timing; serving latency with an accuracy-vs-latency view (:mod:`recbench.report.latency`);
failures. The summary, protocol and results are the task's
(:data:`TASK_SECTIONS`: :mod:`recbench.report.ranking_sections`,
:mod:`recbench.report.rating_sections`); the rest is shared
(:mod:`recbench.report.sections`). Figures (:mod:`recbench.report.figures`) are linked
when they were drawn. Given the same result files the report is the same, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recbench.report.latency import latency_section
from recbench.report.markdown import escape
from recbench.report.metric_display import MetricDisplay
from recbench.report.ranking_sections import RankingSections
from recbench.report.rating_sections import RatingSections
from recbench.report.sections import (
    RunView,
    TaskSectionsFactory,
    dataset_section,
    environment_section,
    failures_section,
    models_section,
    timing_section,
)
from recbench.report.tuning import tuning_section
from recbench.results import RunDirectory, read_json
from recbench.tasks.catalog import stored_task

#: The report sections of each task (:attr:`recbench.tasks.base.Task.name`).
TASK_SECTIONS: Mapping[str, TaskSectionsFactory] = {
    "ranking": RankingSections,
    "rating": RatingSections,
}


def render(
    run_dir: RunDirectory,
    figures: Mapping[str, str] | None = None,
    *,
    folder: Path | None = None,
) -> str:
    """The markdown report of ``run_dir``.

    ``figures`` maps a figure id of :mod:`recbench.report.figures` to the link the report uses
    for it (relative to where the report is written); figures not given are not shown.
    ``folder``: where the report is written, which links to files outside the run are
    relative to (default: the run directory).
    """
    figures = dict(figures or {})
    run = RunView.read(run_dir)
    sections = TASK_SECTIONS[run.task.name](run)
    lines = [f"# recbench report: {escape(run.title)}{sections.title_suffix}", ""]
    lines += [sections.summary(), ""]
    lines += environment_section(run.config_file, run.environment)
    if run.dataset:
        lines += dataset_section(run.dataset)
    lines += sections.protocol()
    lines += tuning_section(run_dir, folder or run_dir.path)
    lines += models_section(run)
    lines += sections.results(figures)
    lines += sections.after_results()
    lines += timing_section(run, sections.rate_unit, sections.timing_note)
    lines += latency_section(
        run_dir, run.config, run.model_order, run.protocols, run.ok, figures.get("accuracy_latency")
    )
    lines += failures_section(run)
    return "\n".join(lines).rstrip() + "\n"


def console_table(path: Path, frame: Any, model_labels: Sequence[str]) -> Any:
    """The console table ``recbench run`` prints for the run at ``path``: its task's
    (``frame``: the ok rows of :meth:`recbench.api.RunResult.to_dataframe`)."""
    config = read_json(Path(path) / "config.json")["config"]
    return TASK_SECTIONS[stored_task(config).name].console_table(
        frame, model_labels, MetricDisplay.of(config)
    )
