"""The report's tuning section: how the run's options were tuned (``tuning.json``, kept
by a run of a ``tuned.toml`` that ``recbench tune`` wrote); nothing when they were not."""

from __future__ import annotations

import os
from pathlib import Path

from recbench.report.markdown import escape
from recbench.results import RunDirectory, read_json

TUNING_FILE = "tuning.json"


def tuning_section(run_dir: RunDirectory, folder: Path) -> list[str]:
    """``## Tuning``: the tuned models, the budget, metric, protocol, seed and validation
    users, and a link to the study report (relative to ``folder``, where the report is
    written)."""
    path = run_dir.path / TUNING_FILE
    if not path.is_file():
        return []
    tuning = read_json(path)
    models = ", ".join(tuning.get("models", [])) or "none"
    study = str(tuning.get("study", ""))
    report = os.path.join(study, str(tuning.get("report", "report.md")))
    link = os.path.relpath(report, folder) if study else report
    short = [f"{model} ({used})" for model, used in dict(tuning.get("unfinished", {})).items()]
    budget = (
        f"the same budget each ({escape(tuning.get('budget', '?'))})"
        if not short
        else f"a budget of {escape(tuning.get('budget', '?'))} each, **except for the "
        f"unfinished studies of {escape(', '.join(short))}: those models were tuned less "
        "than the others**"
    )
    return [
        "## Tuning",
        "",
        f"The options of {escape(models)} were tuned by `recbench tune` with {budget} "
        "for the validation "
        f"{escape(tuning.get('metric', '?'))} under the {escape(tuning.get('protocol', '?'))} "
        f"protocol, on validation users only (split seed {tuning.get('seed', '?')}, "
        f"validation users {tuning.get('validation_users', '?')}); the study report is "
        f"[{escape(link)}]({link}).",
        "",
    ]
