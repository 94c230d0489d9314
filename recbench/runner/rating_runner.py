"""Planning and executing a rating run (:mod:`recbench.tasks.rating.rating`), and its cells.

``recbench run --protocols rating`` comes here (:func:`recbench.runner.execute.execute` hands it
over when :func:`run_task` says the run is for the rating task). Everything the user can
get wrong is checked before any work starts (:func:`plan_rating_run`). For every seed the
rating events are split once; each (model, seed) cell is written as soon as it is
finished, ``resume`` skips the cells finished with the same key, and a model that raises
is marked failed while the run goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import RunConfig, check_sections
from recbench.config.settings import Settings
from recbench.data.prepare import PreparedData, prepare_dataset
from recbench.data.preprocess import PreprocessOptions
from recbench.data.protocols import RATING_PROTOCOL, canonical_protocol
from recbench.data.ratings import RatingOptions, RatingSplit, split_ratings
from recbench.environment import describe_environment, resolve_device
from recbench.errors import ConfigError
from recbench.hookspecs import PLUGIN_API_VERSION
from recbench.progress import Progress
from recbench.registry import Registry
from recbench.results import RunDirectory, cell_name, key_of
from recbench.runner.plans import MetricPlan, ModelPlan, metric_plans, model_plans, task_metrics
from recbench.runner.seeding import seed_everything
from recbench.serve.export import ExportOptions
from recbench.tasks.rating.rating import (
    OPTION_SECTION,
    PREPROCESS_DEFAULTS,
    RATING_TASK,
    SPLIT_METHOD,
    STARS_SUFFIX,
    aggregation_of,
    evaluate_ratings,
    in_rating_units,
    max_history_of,
    rating_fit_context,
)
from recbench.version import __version__


def run_task(config: RunConfig, registry: Registry) -> str:
    """``"rating"`` or ``"ranking"``: the task of the run's protocols, after checking that
    its protocols, models and metrics all serve it.

    Raises
    ------
    ConfigError
        Unknown names, the rating protocol beside ranking protocols, or a model or metric
        of the other task.
    """
    protocols = list(dict.fromkeys(canonical_protocol(p) for p in config.protocols))
    ranking = [p for p in protocols if p != RATING_PROTOCOL]
    if RATING_PROTOCOL in protocols and ranking:
        raise ConfigError(
            f"the rating protocol cannot be mixed with ranking protocols ({', '.join(ranking)})",
            where="--protocols",
            hint="run --protocols rating on its own, and the ranking protocols in another run",
        )
    task = RATING_TASK if RATING_PROTOCOL in protocols else "ranking"
    what = (
        "the rating protocol"
        if task == RATING_TASK
        else f"the ranking protocol{'s' if len(protocols) > 1 else ''} {', '.join(protocols)}"
    )
    for kind, names, flag in (
        ("model", config.models, "--models"),
        ("metric", config.metrics, "--metrics"),
    ):
        for name in names:
            info = registry.get(kind, name)
            if info.task == task:
                continue
            fitting = sorted(i.id for i in registry.all(kind) if i.task == task)
            does = "predicts ratings" if info.task == RATING_TASK else "ranks items"
            if kind == "metric":
                does = "measures rating errors" if info.task == RATING_TASK else "measures rankings"
            if task == RATING_TASK:
                hint = f"use {kind}s of the rating task ({', '.join(fitting) or 'none installed'})"
            else:
                hint = f"run '{info.id}' with --protocols rating, in a run of its own"
            if kind == "metric":
                hint += ", or leave --metrics out to get every metric of the task"
            raise ConfigError(
                f"{kind} '{info.id}' {does} and cannot run under {what}", where=flag, hint=hint
            )
    return task


@dataclass(frozen=True)
class RatingPlan:
    """A rating run's configuration with every name looked up and every option parsed."""

    config: RunConfig
    models: tuple[ModelPlan, ...]
    metrics: tuple[MetricPlan, ...]
    dataset_options: Mapping[str, Any]
    preprocess: PreprocessOptions
    options: RatingOptions
    export: Mapping[str, Any]

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration, as stored with the results."""
        return {
            "task": RATING_TASK,
            "models": {m.label: m.resolved() for m in self.models},
            "model_order": [m.label for m in self.models],
            "dataset": {"name": self.config.dataset, "options": dict(self.dataset_options)},
            "protocols": [RATING_PROTOCOL],
            "seeds": list(self.config.seeds),
            "metrics": {
                m.info.id: {
                    **m.resolved(),
                    "task": RATING_TASK,
                    "aggregation": aggregation_of(m.info.cls),
                    "rating_units": in_rating_units(m.info.cls),
                }
                for m in self.metrics
            },
            "metric_order": [m.info.id for m in self.metrics],
            # Not used by the rating protocol; kept so that the stored configuration reads
            # back as a RunConfig (recbench.api.stored_run_config).
            "cutoffs": list(self.config.cutoffs),
            "preprocess": as_dict(self.preprocess),
            OPTION_SECTION: as_dict(self.options),
            "export": dict(self.export),
            "device": self.config.device,
        }


def plan_rating_run(config: RunConfig, registry: Registry) -> RatingPlan:
    """Look up every name and parse every option of a rating run; raise on the first error."""
    options = config.options
    models = tuple(
        plan for name in config.models for plan in model_plans(registry.get("model", name), options)
    )
    metric_infos = [registry.get("metric", name) for name in config.metrics] or task_metrics(
        registry, RATING_TASK
    )
    if not metric_infos:
        raise ConfigError(
            "no rating metric is registered", hint="check 'recbench list metrics' (rmse, mae)"
        )
    metrics = metric_plans(metric_infos, options)
    for section in ("split", "eval"):
        if section in options:
            raise ConfigError(
                f"options of section '{section}' do not apply to the rating protocol",
                where=f"-o {section}.*",
                hint="the rating split is set with -o rating.test=0.2 -o rating.valid=0.1",
            )
    dataset_id = config.dataset.partition(":")[0]
    dataset_info = registry.get("dataset", dataset_id)
    known = {"preprocess", OPTION_SECTION, "export", dataset_info.id, dataset_id}
    known |= {m.label for m in models} | {m.info.id for m in models}
    known |= {m.info.id for m in metrics}
    check_sections(options, known)
    export = parse_options(ExportOptions, options.get("export", {}), owner="section 'export'")
    return RatingPlan(
        config=config,
        models=models,
        metrics=metrics,
        dataset_options=dict(options.get(dataset_info.id, {})) | dict(options.get(dataset_id, {})),
        preprocess=parse_options(
            PreprocessOptions,
            {**PREPROCESS_DEFAULTS, **options.get("preprocess", {})},
            owner="section 'preprocess'",
        ),
        options=parse_options(
            RatingOptions, options.get(OPTION_SECTION, {}), owner=f"section '{OPTION_SECTION}'"
        ),
        export=as_dict(export),
    )


def execute_rating(
    config: RunConfig,
    *,
    out: Path,
    resume: bool,
    registry: Registry,
    settings: Settings,
    progress: Progress,
    command: list[str] | None = None,
    export_only: Collection[str] | None = None,
) -> RunDirectory:
    """Run the rating benchmark described by ``config`` into the run directory ``out``.

    Each (model, seed) cell is written as soon as it is finished; with ``resume`` the
    cells finished with the same key are skipped; a model that raises is marked failed
    and the run goes on. Rating models have no one-step ``cell()``: nothing is exported
    or timed (``export_only``, from ``recbench export``, does nothing).
    """
    plan = plan_rating_run(config, registry)
    device = resolve_device(config.device)
    if export_only is not None:
        progress.log("Rating models have no one-step cell: nothing to export", style="dim")
        return RunDirectory.open(out)
    if "export" in config.options and plan.export.get("enabled"):
        progress.log(
            "ONNX export and latency are skipped: rating models have no one-step cell",
            style="dim",
        )
    RunDirectory.check_available(out, resume=resume)
    data = prepare_dataset(
        config.dataset, plan.dataset_options, plan.preprocess, registry, settings, progress
    )
    if data.sequences.ratings is None:
        raise ConfigError(
            f"the rating protocol needs ratings, and {data.name} has none",
            where="--dataset",
            hint="use a dataset with explicit ratings, such as ml-100k",
        )
    run_dir = RunDirectory.create(out, resume=resume)
    run_dir.write_run_files(
        command=command,
        config=plan.resolved(),
        environment=describe_environment(registry, device),
        data=data,
    )
    metrics = {m.info.id: m.info.cls(m.options) for m in plan.metrics}
    for seed in config.seeds:
        split = split_ratings(data.sequences, plan.options, seed)
        for model_plan in plan.models:
            _run_rating_model(run_dir, plan, model_plan, data, split, metrics, device, progress)
    return run_dir


def rating_cell_key(plan: RatingPlan, model: ModelPlan, data: PreparedData, seed: int) -> str:
    """Hash of everything that changes a rating cell's result."""
    resolved = plan.resolved()
    return key_of(
        {
            "recbench": __version__,
            "plugin_api": PLUGIN_API_VERSION,
            "model": resolved["models"][model.label],
            "model_distribution": [model.info.distribution, model.info.distribution_version],
            "dataset": data.key,
            OPTION_SECTION: resolved[OPTION_SECTION],
            "metrics": resolved["metrics"],
            "protocol": RATING_PROTOCOL,
            "seed": seed,
        }
    )


def _run_rating_model(
    run_dir: RunDirectory,
    plan: RatingPlan,
    model_plan: ModelPlan,
    data: PreparedData,
    split: RatingSplit,
    metrics: Mapping[str, Any],
    device: torch.device,
    progress: Progress,
) -> None:
    label, seed = model_plan.label, split.seed
    name = cell_name(data.name, label, RATING_PROTOCOL, seed)
    key = rating_cell_key(plan, model_plan, data, seed)
    existing = run_dir.read_cell(name)
    if existing is not None and existing.get("key") == key and existing.get("status") == "ok":
        progress.log(f"{label} (seed {seed}): finished earlier, skipped", style="dim")
        return
    base = {
        "key": key,
        "protocol": RATING_PROTOCOL,
        "task": RATING_TASK,
        **model_plan.cell_fields(label),
        "dataset": data.name,
        "dataset_key": data.key,
        "seed": seed,
        "split": {
            "method": SPLIT_METHOD,
            **as_dict(plan.options),
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
    ctx = rating_fit_context(
        split,
        device,
        progress=progress,
        checkpoint_dir=run_dir.path / "checkpoints" / cell_name(data.name, label, "fit", seed),
    )
    try:
        seed_everything(seed)
        model = model_plan.info.cls(model_plan.options)
        base["max_history"] = max_history_of(model)
        progress.log(f"Training {label} on {data.name} (seed {seed}, {len(split.train):,} ratings)")
        started = time.perf_counter()
        model.fit(split.train, split.valid if len(split.valid) else None, ctx)
        fit_seconds = time.perf_counter() - started
        result = evaluate_ratings(
            model,
            split.test,
            metrics,
            split.scale,
            device=device,
            batch_size=plan.options.batch_size,
            clip=plan.options.clip,
            progress=progress,
            description=f"Evaluating {label} (rating, seed {seed})",
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        progress.log(f"{label} (seed {seed}) failed: {reason}", style="red")
        failed = dict(base, status="failed", error=reason, traceback=traceback.format_exc(limit=8))
        run_dir.write_cell(name, failed, {})
        return
    cell = dict(
        base,
        status="ok",
        n_queries=result.n_events,
        n_users=result.n_users,
        metrics={
            metric: {
                "mean": summary.mean,
                "ci95": summary.ci95,
                "n": summary.n,
                "per_query": metric in result.per_event,
                "aggregation": result.aggregations.get(metric.removesuffix(STARS_SUFFIX), "mean"),
                "higher_is_better": bool(
                    metrics[metric.removesuffix(STARS_SUFFIX)].higher_is_better
                ),
                "unit": "stars" if metric not in result.aggregations else "scaled",
            }
            for metric, summary in result.summaries.items()
        },
        timing={
            "fit_seconds": fit_seconds,
            "eval_seconds": result.seconds,
            "queries_per_second": result.events_per_second,
        },
    )
    run_dir.write_cell(name, cell, result.per_event)
    shown = ", ".join(
        f"{metric} {summary.mean:.4f}" for metric, summary in result.summaries.items()
    )
    progress.log(f"{label} (seed {seed}): {shown}")
