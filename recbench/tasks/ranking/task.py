"""The ranking task: rank every item for the queries of held-out users.

Its options are the sections ``split`` (:class:`recbench.data.splits.SplitOptions`) and
``eval`` (:class:`recbench.config.run_config.EvaluationOptions`), and ``--order-check``.
Each seed (each fold of a seed, for the ``kfold`` split) splits the users
(:func:`recbench.data.splits.make_split`) and builds the test
queries of every protocol of the run and the validation queries
(``eval.validation_protocol``); a model is fitted on the training users, selected on the
validation queries (the fit context's ``validate``) and evaluated on the test queries
(:func:`recbench.tasks.ranking.evaluation.evaluate`). On the first seed the order-check
model is fitted a second time on order-shuffled sequences (first fold)
(:mod:`recbench.tasks.ranking.order_check`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import EvaluationOptions, RunConfig, evaluation_key
from recbench.contracts import FitContext
from recbench.data.prepare import PreparedData
from recbench.data.protocols import PROTOCOLS, Queries, build_queries
from recbench.data.splits import (
    Split,
    SplitOptions,
    check_folds,
    check_given_options,
    make_split,
)
from recbench.errors import ConfigError
from recbench.progress import Progress
from recbench.registry import PluginInfo, Registry
from recbench.results import QUERY_USER
from recbench.tasks.base import Evaluation, Job, RunPlan, Task, TaskRun, metric_entry
from recbench.tasks.plans import MetricPlan, ModelPlan
from recbench.tasks.ranking import order_check
from recbench.tasks.ranking.evaluation import evaluate


@dataclass(frozen=True)
class RankingOptions:
    """The ranking task's options: the split, the evaluation, and the order-check model
    (a label; ``None``: no order check)."""

    split: SplitOptions
    evaluation: EvaluationOptions
    order_check: str | None


@dataclass(frozen=True)
class RankingSplit:
    """The split of the users of seed ``seed`` (and fold ``fold`` of a ``kfold`` split,
    else ``None``) with its queries: ``test`` per protocol of the run, ``valid`` under
    ``eval.validation_protocol`` (``None``: no validation query). ``test_index`` is set
    when ``test`` is a selection of the benchmark's queries (the order check's sample):
    per protocol, the selected queries' positions among the benchmark's."""

    seed: int
    split: Split
    test: Mapping[str, Queries]
    valid: Queries | None
    fold: int | None = None
    test_index: Mapping[str, np.ndarray] | None = None

    @cached_property
    def item_counts(self) -> np.ndarray:
        """How often each item occurs in the training sequences."""
        return self.split.train.item_counts()


class RankingTask(Task):
    """Rank items for held-out users' queries (see the module docstring)."""

    name = "ranking"
    protocols = PROTOCOLS
    sections = ("split", "eval")
    sections_hint = "set the ranking split with -o split.*, the evaluation with -o eval.*"
    model_does = "ranks items"
    metric_does = "measures rankings"

    # -- planning ----------------------------------------------------------------------

    def plan_options(
        self,
        config: RunConfig,
        registry: Registry,
        models: Sequence[ModelPlan],
        metrics: Sequence[MetricPlan],
    ) -> RankingOptions:
        options = config.options
        evaluation = parse_options(
            EvaluationOptions, options.get("eval", {}), owner="section 'eval'"
        )
        metric_id, _, k = evaluation.validation_metric.partition("@")
        registry.get("metric", metric_id)
        if not k.isdigit() or int(k) < 1:
            raise ConfigError(
                f"validation metric '{evaluation.validation_metric}' needs a cutoff",
                where="-o eval.validation_metric",
                hint="write it as METRIC@K, e.g. mrr@20",
            )
        checked = order_check.choose_model(
            config.order_check,
            [m.label for m in models],
            [m.label for m in models if m.info.has_cell],
        )
        split = parse_options(SplitOptions, options.get("split", {}), owner="section 'split'")
        check_given_options(split, options.get("split", {}))
        return RankingOptions(split=split, evaluation=evaluation, order_check=checked)

    def resolved_options(self, options: RankingOptions) -> dict[str, Any]:
        return {
            "split": options.split.resolved(),
            "eval": as_dict(options.evaluation),
            "order_check": options.order_check,
        }

    def key_fields(self, resolved: Mapping[str, Any], ablation: str | None) -> dict[str, Any]:
        sample = resolved["eval"].get("order_check_users", 0)
        return {
            "split": resolved["split"],
            "eval": evaluation_key(resolved["eval"]),
            "cutoffs": resolved["cutoffs"],
            **(
                {
                    "ablation": ablation,
                    "ablation_version": order_check.VERSION,
                    **({"order_check_users": sample} if sample else {}),
                }
                if ablation
                else {}
            ),
        }

    # -- running -----------------------------------------------------------------------

    def check_data(self, plan: RunPlan, data: PreparedData) -> None:
        """Refuse a cutoff beyond the catalogue: every item would be in every top-k list
        and every metric would say nothing."""
        check_folds(plan.task_options.split, len(data.sequences))
        n_items = data.sequences.n_items
        too_long = [k for k in plan.config.cutoffs if k > n_items]
        if too_long:
            raise ConfigError(
                f"cutoff {too_long[0]} is longer than the catalogue: {data.name} has "
                f"{n_items:,} items after preprocessing",
                where="--cutoffs",
                hint=f"use cutoffs of at most {n_items:,}",
            )

    def dataset_fields(self, plan: RunPlan, data: PreparedData) -> dict[str, Any]:
        return {"exclude_seen": exclude_seen(plan.task_options.evaluation, data)}

    def folds(self, run: TaskRun) -> tuple[int | None, ...]:
        options: SplitOptions = run.plan.task_options.split
        return tuple(range(options.folds)) if options.method == "kfold" else (None,)

    def split(self, run: TaskRun, seed: int, fold: int | None = None) -> RankingSplit:
        """The split of ``seed`` (of its fold ``fold`` for ``kfold``; ``None``: fold 0)."""
        plan = run.plan
        split = make_split(run.data.sequences, plan.task_options.split, seed, fold)
        unsupported = [p for p in plan.protocols if p not in split.protocols]
        if unsupported:
            raise ConfigError(
                f"the {split.method} split does not support protocol {', '.join(unsupported)}",
                where="--protocols",
                hint=f"use {', '.join(split.protocols)} with this split",
            )
        protocol = plan.task_options.evaluation.validation_protocol
        valid = build_queries(protocol, split.valid) if len(split.valid) else None
        return RankingSplit(
            seed=seed,
            split=split,
            test={p: build_queries(p, split.test) for p in plan.protocols},
            valid=valid if valid is not None and len(valid) else None,
            fold=split.fold,
        )

    def ablations(self, run: TaskRun, split: RankingSplit, seed: int) -> list[Job]:
        """The order check: the chosen model, trained on shuffled training sequences,
        reading each of the benchmark's queries (of a sample of the test users, at most
        ``eval.order_check_users``) in a shuffled order."""
        options: RankingOptions = run.plan.task_options
        label = options.order_check
        if label is None:
            return []
        model = next(m for m in run.plan.models if m.label == label)
        sampled = {
            protocol: order_check.sample_users(
                queries, options.evaluation.order_check_users, split.seed
            )
            for protocol, queries in split.test.items()
        }
        test_index = {p: index for p, index in sampled.items() if index is not None}
        checked = replace(
            split,
            split=order_check.shuffled_training(split.split, seed),
            test={
                p: q if p not in test_index else q.select(test_index[p])
                for p, q in split.test.items()
            },
            test_index=test_index or None,
        )
        return [
            Job(
                model,
                checked,
                ablation=order_check.ORDER_SHUFFLED,
                reads=lambda fitted: order_check.ShuffledInputs(fitted, seed),
            )
        ]

    def cell_fields(self, run: TaskRun, split: RankingSplit) -> dict[str, Any]:
        options: RankingOptions = run.plan.task_options
        return {
            "split": {
                **options.split.resolved(),
                "train_users": len(split.split.train),
                "valid_users": len(split.split.valid),
                "test_users": len(split.split.test),
            },
            "policies": {
                "exclude_seen": exclude_seen(options.evaluation, run.data),
                "ties": options.evaluation.ties,
            },
            "cutoffs": list(run.plan.config.cutoffs),
        }

    def training_size(self, split: RankingSplit) -> str:
        return f"{len(split.split.train):,} users"

    def fit(self, run: TaskRun, job: Job, model: Any, checkpoint_dir: Path) -> None:
        split: RankingSplit = job.split
        evaluation: EvaluationOptions = run.plan.task_options.evaluation
        metric_id, _, k = evaluation.validation_metric.partition("@")

        def validate(fitted: Any) -> float:
            assert split.valid is not None
            result = evaluate(
                job.as_evaluated(fitted),
                split.valid,
                {metric_id: run.metrics[metric_id]} if metric_id in run.metrics else {},
                cutoffs=(int(k),),
                item_counts=split.item_counts,
                device=run.device,
                exclude_seen=exclude_seen(evaluation, run.data),
                ties=evaluation.ties,
                progress=Progress.silent(),
                batch_size=evaluation.batch_size or None,
                one_pass=one_pass(evaluation, job),
            )
            return result.summaries[evaluation.validation_metric].mean

        ctx = FitContext(
            n_items=run.data.sequences.n_items,
            device=run.device,
            seed=split.seed,
            item_counts=split.item_counts,
            progress=run.progress,
            validate=validate if split.valid is not None and metric_id in run.metrics else None,
            validation_metric=evaluation.validation_metric,
            registry=run.registry,
            checkpoint_dir=checkpoint_dir,
        )
        model.fit(split.split.train, split.valid, ctx)

    def evaluate(
        self, run: TaskRun, job: Job, model: Any, protocol: str, description: str
    ) -> Evaluation:
        split: RankingSplit = job.split
        evaluation: EvaluationOptions = run.plan.task_options.evaluation
        result = evaluate(
            job.as_evaluated(model),
            split.test[protocol],
            run.metrics,
            cutoffs=run.plan.config.cutoffs,
            item_counts=split.item_counts,
            device=run.device,
            exclude_seen=exclude_seen(evaluation, run.data),
            ties=evaluation.ties,
            progress=run.progress,
            batch_size=evaluation.batch_size or None,
            description=description,
            one_pass=one_pass(evaluation, job),
        )
        per_query = dict(result.per_query)
        queries = split.test[protocol]
        per_query[QUERY_USER] = np.asarray(queries.row, dtype=np.int64)
        if split.test_index is not None and protocol in split.test_index:
            per_query[order_check.QUERY_INDEX] = split.test_index[protocol]
        return Evaluation(
            n_queries=result.n_queries,
            n_users=result.n_users,
            metrics={
                name: metric_entry(summary, per_query=name in result.per_query)
                for name, summary in result.summaries.items()
            },
            per_query=per_query,
            seconds=result.seconds,
            queries_per_second=result.queries_per_second,
        )

    def export_queries(self, split: RankingSplit, protocol: str) -> Queries:
        return split.test[protocol]


def exclude_seen(options: EvaluationOptions, data: PreparedData) -> bool:
    """Whether the input items are removed from the rankings: ``auto`` removes them when
    the data has no repeated (user, item) pairs."""
    if options.exclude_seen == "auto":
        return not bool(data.statistics.get("has_repeats", False))
    return options.exclude_seen == "on"


def reads_history(options: EvaluationOptions, model: PluginInfo) -> bool:
    """Whether ``model`` is evaluated in one pass over each user's whole history: under
    ``eval.prefixes=history``, when it has ``score_prefixes``."""
    return options.prefixes == "history" and model.has_score_prefixes


def one_pass(options: EvaluationOptions, job: Job) -> bool:
    """Whether the job's model is evaluated in one pass (:func:`reads_history`), read as
    it is (an ablation that rewrites its inputs, such as the order check, is not)."""
    return reads_history(options, job.model.info) and job.reads is None
