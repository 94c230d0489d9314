"""The study report ``DIR/report.md``: per model the trials completed, pruned and
failed, the time used, the best validation value and options, the tuning curve (best so
far against trials and against trial time) and the budget sensitivity (the models'
order after 25%, 50% and 100% of the budget)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from recbench.data.files import write_bytes_atomic
from recbench.report.markdown import escape
from recbench.tuning.budget import (
    CONFIGURED,
    Budget,
    counted_trials,
    format_seconds,
    model_budget,
    unfinished,
)
from recbench.tuning.study import stored_study

if TYPE_CHECKING:
    from recbench.tuning.plan import TunePlan

#: The shares of the budget at which the report ranks the models.
BUDGET_SHARES = (0.25, 0.5, 1.0)
CURVE_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class StudyView:
    """A model's study as the report shows it: its counted trials in order, each with
    the trial time used when it finished and the best value so far."""

    model: str
    trials: list[FrozenTrial]
    elapsed: list[float]
    best_so_far: list[float | None]
    budget: dict[str, Any]
    wall_seconds: float
    unfinished: str | None

    @classmethod
    def read(cls, storage: Any, model: str, budget: Budget) -> StudyView:
        """``model``'s study (``budget``: its budget, for a study a stopped tune had not
        started)."""
        study = stored_study(storage, model)
        if study is None:
            return cls(model, [], [], [], budget.as_dict(), 0.0, budget.shortfall([]))
        trials = sorted(
            counted_trials(study), key=lambda t: t.datetime_complete or t.datetime_start
        )
        elapsed, best_so_far, used, best = [], [], 0.0, None
        for trial in trials:
            if trial.datetime_complete is not None and trial.datetime_start is not None:
                used += (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.state == TrialState.COMPLETE and (best is None or trial.value > best):
                best = trial.value
            elapsed.append(used)
            best_so_far.append(best)
        return cls(
            model=model,
            trials=trials,
            elapsed=elapsed,
            best_so_far=best_so_far,
            budget=dict(study.user_attrs.get("budget", {})),
            wall_seconds=float(study.user_attrs.get("wall_seconds", 0.0)),
            unfinished=unfinished(study, budget),
        )

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def best(self) -> FrozenTrial | None:
        completed = [t for t in self.trials if t.state == TrialState.COMPLETE]
        return max(completed, key=lambda t: (t.value, -t.number)) if completed else None

    @property
    def configured(self) -> FrozenTrial | None:
        """The trial that ran the configured options (``None``: the study has none)."""
        return next((t for t in self.trials if t.user_attrs.get(CONFIGURED)), None)

    def best_at(self, share: float) -> float | None:
        """The best value after ``share`` of the budget (trials, or trial time)."""
        if not self.trials:
            return None
        if self.budget.get("trials"):
            n = math.ceil(share * self.budget["trials"])
            index = min(n, len(self.trials)) - 1
        else:
            limit = share * float(self.budget.get("seconds") or self.elapsed[-1])
            index = max((i for i, e in enumerate(self.elapsed) if e <= limit), default=-1)
        return self.best_so_far[index] if index >= 0 else None


def write_report(path: Path, plan: TunePlan, storage: Any) -> None:
    """Write the study report of ``plan``'s models."""
    views = [
        StudyView.read(storage, info.id, model_budget(plan.request.budget, info))
        for info in plan.models
    ]
    write_bytes_atomic(path, render(plan, views).encode())


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _configured_value(trial: FrozenTrial | None) -> str:
    if trial is None:
        return "–"
    if trial.state == TrialState.COMPLETE:
        return _value(trial.value)
    return "pruned" if trial.state == TrialState.PRUNED else "failed"


def render(plan: TunePlan, views: list[StudyView]) -> str:
    request = plan.request
    metric = request.metric
    pruning = "median of the per-epoch validation values" if request.pruning else "none"
    lines = [
        f"# recbench tuning: {escape(request.dataset)}",
        "",
        f"Every model was tuned with the same budget ({request.budget.describe()}; a model "
        f"with an empty search space gets one trial) for the validation {metric} under the "
        f"{plan.protocol} protocol, on validation users only (the test users were never "
        f"loaded into a model). Sampler: Optuna TPE seeded with {request.seed}; pruning: "
        f"{pruning}; {request.jobs} worker(s).",
        "",
    ]
    short = [f"{v.model} ({v.unfinished})" for v in views if v.unfinished]
    if short:
        lines += [
            f"**Unfinished studies: {escape(', '.join(short))}.** The tune was stopped before "
            "these models had their budget, so they were tuned less than the others; "
            "rerunning the same command continues them.",
            "",
        ]
    configured = any(view.configured is not None for view in views)
    lines += [
        "## Studies",
        "",
        *(
            [
                "*configured*: the validation value of each study's first trial, the model's "
                "configured options (its defaults and the options fixed with `-o`); what "
                "tuning gained is the best value over it.",
                "",
            ]
            if configured
            else []
        ),
        "| model | completed | pruned | failed | trial time | wall time | "
        + (f"configured {escape(metric)} | " if configured else "")
        + f"best validation {escape(metric)} | best options |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if configured else "") + "---:|---|",
    ]
    for view in views:
        best = view.best
        options = (
            ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in best.params.items()
            )
            if best is not None and best.params
            else ("defaults" if best is not None else "none completed: defaults kept")
        )
        if best is not None and best.params and best.user_attrs.get(CONFIGURED):
            options += " (the configured options)"
        lines.append(
            f"| {view.model} | {view.count(TrialState.COMPLETE)} | "
            f"{view.count(TrialState.PRUNED)} | {view.count(TrialState.FAIL)} | "
            f"{format_seconds(view.elapsed[-1] if view.elapsed else 0.0)} | "
            f"{format_seconds(view.wall_seconds)} | "
            + (f"{_configured_value(view.configured)} | " if configured else "")
            + f"{_value(best.value if best else None)} | {escape(options)} |"
        )
    lines += ["", "## Budget sensitivity", ""]
    lines += [
        "The models ranked by their best validation value after a share of the budget: "
        "a lead that changes between the columns depends on the budget.",
        "",
        "| share of the budget | order (best first) |",
        "|---|---|",
    ]
    for share in BUDGET_SHARES:
        ranked = sorted(
            ((v.best_at(share), v.model) for v in views),
            key=lambda pair: -(pair[0] if pair[0] is not None else -math.inf),
        )
        order = " > ".join(f"{model} ({_value(value)})" for value, model in ranked)
        lines.append(f"| {share:.0%} | {order} |")
    lines += ["", "## Tuning curves", "", f"Best validation {escape(metric)} so far, by trial:"]
    lines += ["", "| trial | " + " | ".join(v.model for v in views) + " |"]
    lines.append("|---:|" + "---:|" * len(views))
    longest = max((len(v.trials) for v in views), default=0)
    for i in range(longest):
        cells = [_value(v.best_so_far[i]) if i < len(v.trials) else "" for v in views]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += ["", "By trial time used (summed over workers):", ""]
    lines += ["| share of the trial time | " + " | ".join(v.model for v in views) + " |"]
    lines.append("|---:|" + "---:|" * len(views))
    for share in CURVE_SHARES:
        cells = []
        for view in views:
            if not view.elapsed:
                cells.append("")
                continue
            limit = share * view.elapsed[-1]
            index = max((i for i, e in enumerate(view.elapsed) if e <= limit + 1e-9), default=-1)
            value = view.best_so_far[index] if index >= 0 else None
            cells.append(f"{_value(value)} @ {format_seconds(limit)}")
        lines.append(f"| {share:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
