"""The rating task: predict held-out ratings (the protocol: :mod:`recbench.tasks.rating.evaluation`).

Its options are the section ``rating`` (:class:`recbench.data.ratings.RatingOptions`).
Each seed splits the rating events (:func:`recbench.data.ratings.split_ratings`); a model
is fitted on the training events with early stopping on the validation events (the fit
context's ``validate``, :func:`recbench.tasks.rating.evaluation.rating_fit_context`) and
evaluated on the test events (:func:`recbench.tasks.rating.evaluation.evaluate_ratings`).
Rating models have no one-step cell: nothing is exported or timed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import RunConfig
from recbench.data.prepare import PreparedData
from recbench.data.protocols import RATING_PROTOCOL
from recbench.data.ratings import RatingOptions, RatingSplit, split_ratings
from recbench.errors import ConfigError
from recbench.registry import Registry
from recbench.tasks.base import Evaluation, Job, RunPlan, Task, TaskRun, metric_entry
from recbench.tasks.plans import MetricPlan, ModelPlan
from recbench.tasks.rating.evaluation import (
    OPTION_SECTION,
    PREPROCESS_DEFAULTS,
    RATING_TASK,
    SPLIT_METHOD,
    STARS_SUFFIX,
    evaluate_ratings,
    max_history_of,
    rating_fit_context,
)


class RatingTask(Task):
    """Predict held-out ratings (see the module docstring)."""

    name = RATING_TASK
    protocols = (RATING_PROTOCOL,)
    sections = (OPTION_SECTION,)
    sections_hint = "the rating split is set with -o rating.test=0.2 -o rating.valid=0.1"
    model_does = "predicts ratings"
    metric_does = "measures rating errors"
    preprocess_defaults = PREPROCESS_DEFAULTS
    no_export = "rating models have no one-step cell"

    # -- planning ----------------------------------------------------------------------

    def describe(self, protocols: Sequence[str]) -> str:
        return "the rating protocol"

    def misfit_hint(self, kind: str, plugin_id: str, owner: Task, fitting: Sequence[str]) -> str:
        return f"use {kind}s of the rating task ({', '.join(fitting) or 'none installed'})"

    def plan_options(
        self,
        config: RunConfig,
        registry: Registry,
        models: Sequence[ModelPlan],
        metrics: Sequence[MetricPlan],
    ) -> RatingOptions:
        return parse_options(
            RatingOptions,
            config.options.get(OPTION_SECTION, {}),
            owner=f"section '{OPTION_SECTION}'",
        )

    def resolved_options(self, options: RatingOptions) -> dict[str, Any]:
        return {OPTION_SECTION: as_dict(options)}

    def metric_entry(self, metric: MetricPlan) -> dict[str, Any]:
        return {
            **metric.resolved(),
            "task": RATING_TASK,
            "aggregation": metric.info.aggregation,
            "rating_units": metric.info.rating_units,
        }

    def key_fields(self, resolved: Mapping[str, Any], ablation: str | None) -> dict[str, Any]:
        return {OPTION_SECTION: resolved[OPTION_SECTION]}

    # -- running -----------------------------------------------------------------------

    def check_data(self, plan: RunPlan, data: PreparedData) -> None:
        if data.sequences.ratings is None:
            raise ConfigError(
                f"the rating protocol needs ratings, and {data.name} has none",
                where="--dataset",
                hint="use a dataset with explicit ratings, such as ml-100k",
            )

    def split(self, run: TaskRun, seed: int, fold: int | None = None) -> RatingSplit:
        return split_ratings(run.data.sequences, run.plan.task_options, seed)

    def cell_fields(self, run: TaskRun, split: RatingSplit) -> dict[str, Any]:
        return {
            "task": RATING_TASK,
            "split": {
                "method": SPLIT_METHOD,
                **as_dict(run.plan.task_options),
                "train_events": len(split.train),
                "valid_events": len(split.valid),
                "test_events": len(split.test),
                "train_users": int(np.count_nonzero(split.train.history.lengths)),
                "valid_users": len(np.unique(split.valid.users)),
                "test_users": len(np.unique(split.test.users)),
            },
            "scale": split.scale.as_dict(),
            "max_history": None,
        }

    def model_fields(self, model: Any) -> dict[str, Any]:
        return {"max_history": max_history_of(model)}

    def training_size(self, split: RatingSplit) -> str:
        return f"{len(split.train):,} ratings"

    def fit(self, run: TaskRun, job: Job, model: Any, checkpoint_dir: Path) -> None:
        split: RatingSplit = job.split
        ctx = rating_fit_context(
            split, run.device, progress=run.progress, checkpoint_dir=checkpoint_dir
        )
        model.fit(split.train, split.valid if len(split.valid) else None, ctx)

    def evaluate(
        self, run: TaskRun, job: Job, model: Any, protocol: str, description: str
    ) -> Evaluation:
        split: RatingSplit = job.split
        options: RatingOptions = run.plan.task_options
        result = evaluate_ratings(
            job.as_evaluated(model),
            split.test,
            run.metrics,
            split.scale,
            registrations={m.info.id: m.info for m in run.plan.metrics},
            device=run.device,
            batch_size=options.batch_size,
            clip=options.clip,
            progress=run.progress,
            description=description,
        )
        return Evaluation(
            n_queries=result.n_events,
            n_users=result.n_users,
            metrics={
                metric: {
                    **metric_entry(summary, per_query=metric in result.per_event),
                    "aggregation": result.aggregations.get(
                        metric.removesuffix(STARS_SUFFIX), "mean"
                    ),
                    "higher_is_better": bool(
                        run.metrics[metric.removesuffix(STARS_SUFFIX)].higher_is_better
                    ),
                    "unit": "stars" if metric not in result.aggregations else "scaled",
                }
                for metric, summary in result.summaries.items()
            },
            per_query=result.per_event,
            seconds=result.seconds,
            queries_per_second=result.events_per_second,
            headline=", ".join(
                f"{metric} {summary.mean:.4f}" for metric, summary in result.summaries.items()
            ),
        )
