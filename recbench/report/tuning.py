"""The report's tuning section: how the run's options were tuned (``tuning.json``, kept
by a run of a ``tuned.toml`` that ``recbench tune`` wrote); nothing when they were not."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        f"protocol, on validation users only (split seed "
        f"{tuning.get('split_seed', tuning.get('seed', '?'))}, "
        f"validation users {tuning.get('validation_users', '?')}); the study report is "
        f"[{escape(link)}]({link}).",
        "",
        *_test_users(run_dir, tuning),
    ]


def _test_users(run_dir: RunDirectory, tuning: Mapping[str, Any]) -> list[str]:
    """Whether the tune's users stayed apart from every seed's test users: they do when
    the run splits every seed with the tune's split seed (``split.seed``, which
    ``tuned.toml`` sets), and not with a k-fold split (the tune saw fold 0's split only)."""
    config = dict(read_json(run_dir.path / "config.json").get("config", {}))
    split = dict(config.get("split", {}))
    tuned_on = tuning.get("split_seed", tuning.get("seed"))
    split_seeds = {split["seed"]} if split.get("seed") is not None else set(config["seeds"])
    if split.get("method") == "kfold":
        return [
            "**The test users of the folds after the first were training or validation users "
            "of the tune** (it tuned on one split of the users): their results may be "
            "optimistic for the tuned models.",
            "",
        ]
    resplit = sorted(split_seeds - {tuned_on})
    if not resplit:
        return [
            f"Every seed of this run tests the test users of that split (split seed "
            f"{tuned_on}): no test user was a training or validation user of the tune.",
            "",
        ]
    which = (
        f"This run splits the users with seed {split['seed']}"
        if split.get("seed") is not None
        else f"Seed{'s' if len(resplit) > 1 else ''} {', '.join(map(str, resplit))} of this "
        "run split the users anew"
    )
    return [
        f"**{which}**, so some of its test users were "
        f"training or validation users of the tune (split seed {tuned_on}): their results may "
        "be optimistic for the tuned models. Set `split.seed` to the tune's split seed "
        "(tuned.toml does) to test its test users only.",
        "",
    ]
