"""Runs a benchmark: prepare data, split, train every model, evaluate every protocol.

Everything the user can get wrong (names, options, protocols) is checked before any work
starts. Each (dataset, model, protocol, seed) cell is written as soon as it is finished,
so an interrupted or partly failed run keeps what it computed; ``resume`` skips cells that
are finished with the same key. A model that raises is marked failed and the run goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import CORE_SECTIONS, EvaluationOptions, RunConfig, check_sections
from recbench.config.settings import Settings
from recbench.contracts import FitContext
from recbench.data.prepare import PreparedData, prepare_dataset
from recbench.data.preprocess import PreprocessOptions
from recbench.data.protocols import Queries, build_queries, canonical_protocol
from recbench.data.splits import Split, SplitOptions, make_split
from recbench.environment import describe_environment, resolve_device
from recbench.errors import ConfigError
from recbench.hookspecs import PLUGIN_API_VERSION
from recbench.progress import Progress
from recbench.registry import Registry
from recbench.results import RunDirectory, cell_name, key_of
from recbench.runner.plans import MetricPlan, ModelPlan, metric_plans, model_plans, task_metrics
from recbench.runner.seeding import seed_everything
from recbench.serve import latency
from recbench.serve.export import ExportOptions
from recbench.tasks.ranking import order_check as ordering
from recbench.tasks.ranking.evaluation import EvaluationResult, evaluate
from recbench.version import __version__

VALIDATION_PROTOCOL = "last-item"


@dataclass(frozen=True)
class RunPlan:
    """A run's configuration with every name looked up and every option parsed."""

    config: RunConfig
    models: tuple[ModelPlan, ...]
    metrics: tuple[MetricPlan, ...]
    protocols: tuple[str, ...]
    dataset_options: Mapping[str, Any]
    preprocess: PreprocessOptions
    split: SplitOptions
    evaluation: EvaluationOptions
    export: ExportOptions = field(default_factory=ExportOptions)
    order_check: str | None = None

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration, as stored with the results."""
        return {
            "models": {m.label: m.resolved() for m in self.models},
            "dataset": {"name": self.config.dataset, "options": dict(self.dataset_options)},
            "protocols": list(self.protocols),
            "seeds": list(self.config.seeds),
            "metrics": {m.info.id: m.resolved() for m in self.metrics},
            "cutoffs": list(self.config.cutoffs),
            "preprocess": as_dict(self.preprocess),
            "split": as_dict(self.split),
            "eval": as_dict(self.evaluation),
            "export": as_dict(self.export),
            "device": self.config.device,
            "order_check": self.order_check,
            # the stored JSON sorts its keys: these keep the order the run was given in
            "model_order": [m.label for m in self.models],
            "metric_order": [m.info.id for m in self.metrics],
        }


def plan_run(config: RunConfig, registry: Registry) -> RunPlan:
    """Look up every name and parse every option of ``config``; raise on the first error."""
    options = config.options
    models = tuple(
        plan for name in config.models for plan in model_plans(registry.get("model", name), options)
    )
    metric_infos = [registry.get("metric", name) for name in config.metrics] or task_metrics(
        registry, "ranking"
    )
    if not metric_infos:
        raise ConfigError("no metric is registered", hint="check 'recbench list metrics'")
    metrics = metric_plans(metric_infos, options)
    protocols = tuple(dict.fromkeys(canonical_protocol(p) for p in config.protocols))
    dataset_id = config.dataset.partition(":")[0]
    dataset_info = registry.get("dataset", dataset_id)
    evaluation = parse_options(EvaluationOptions, options.get("eval", {}), owner="section 'eval'")
    metric_id, _, k = evaluation.validation_metric.partition("@")
    registry.get("metric", metric_id)
    if not k.isdigit() or int(k) < 1:
        raise ConfigError(
            f"validation metric '{evaluation.validation_metric}' needs a cutoff",
            where="-o eval.validation_metric",
            hint="write it as METRIC@K, e.g. mrr@20",
        )
    order_check = ordering.choose_model(
        config.order_check,
        [m.label for m in models],
        [m.label for m in models if callable(getattr(m.info.cls, "cell", None))],
    )
    known_sections = {*CORE_SECTIONS, "export", *(m.label for m in models)}
    known_sections |= {m.info.id for m in models}
    known_sections |= {dataset_info.id, dataset_id} | {m.info.id for m in metrics}
    check_sections(options, known_sections)
    return RunPlan(
        config=config,
        models=models,
        metrics=metrics,
        protocols=protocols,
        dataset_options=dict(options.get(dataset_info.id, {})) | dict(options.get(dataset_id, {})),
        preprocess=parse_options(
            PreprocessOptions, options.get("preprocess", {}), owner="section 'preprocess'"
        ),
        split=parse_options(SplitOptions, options.get("split", {}), owner="section 'split'"),
        evaluation=evaluation,
        export=parse_options(ExportOptions, options.get("export", {}), owner="section 'export'"),
        order_check=order_check,
    )


def execute(
    config: RunConfig,
    *,
    out: Path,
    resume: bool,
    registry: Registry,
    settings: Settings,
    progress: Progress,
    command: list[str] | None = None,
    export_only: Collection[str] | None = None,
    force_export: bool = False,
) -> RunDirectory:
    """Run the benchmark described by ``config`` into the run directory ``out``.

    After its evaluation each model is exported and timed (:mod:`recbench.serve.latency`)
    unless ``export.enabled`` is off; a model whose latency record exists is not redone
    unless ``force_export``. With ``export_only`` (model labels; empty: all) nothing is
    evaluated and the run's files are kept: the models whose record is missing (or all,
    with ``force_export``) are trained again with the run's configuration and seeds,
    then exported and timed (``recbench export``).
    """
    from recbench.runner import rating_runner
    from recbench.tasks.rating.rating import RATING_TASK

    if (
        rating_runner.run_task(config, registry) == RATING_TASK
    ):  # recbench.runner.rating_runner runs it
        return rating_runner.execute_rating(
            config,
            out=out,
            resume=resume,
            registry=registry,
            settings=settings,
            progress=progress,
            command=command,
            export_only=export_only,
        )
    plan = plan_run(config, registry)
    if export_only is not None:
        plan = replace(plan, export=replace(plan.export, enabled=True))
    device = resolve_device(config.device)
    RunDirectory.check_available(out, resume=resume)
    data = prepare_dataset(
        config.dataset, plan.dataset_options, plan.preprocess, registry, settings, progress
    )
    run_dir = RunDirectory.create(out, resume=resume or export_only is not None)
    exclude_seen = _exclude_seen(plan.evaluation, data)
    if export_only is None:  # an export keeps the record of the run it exports
        run_dir.write_run_files(
            command=command,
            config=plan.resolved(),
            environment=describe_environment(registry, device),
            data=data,
            exclude_seen=exclude_seen,
        )
    metrics = {m.info.id: m.info.cls(m.options) for m in plan.metrics}

    for seed in config.seeds:
        split = make_split(data.sequences, plan.split, seed)
        unsupported = [p for p in plan.protocols if p not in split.protocols]
        if unsupported:
            raise ConfigError(
                f"the {split.method} split does not support protocol {', '.join(unsupported)}",
                where="--protocols",
                hint=f"use {', '.join(split.protocols)} with this split",
            )
        test_queries = {p: build_queries(p, split.test) for p in plan.protocols}
        valid_queries = (
            build_queries(VALIDATION_PROTOCOL, split.valid) if len(split.valid) else None
        )
        if valid_queries is not None and len(valid_queries) == 0:
            valid_queries = None
        jobs: list[tuple[ModelPlan, Split, dict[str, Any]]] = [
            (model_plan, split, {})
            for model_plan in plan.models
            if not export_only or model_plan.label in export_only
        ]
        if plan.order_check is not None and seed == config.seeds[0] and export_only is None:
            jobs.append(_order_check_job(plan, split, seed))
        for model_plan, model_split, extra in jobs:
            _run_model(
                run_dir,
                plan,
                model_plan,
                data,
                model_split,
                seed,
                test_queries,
                valid_queries,
                metrics,
                exclude_seen,
                device,
                progress,
                registry,
                export_only=export_only is not None,
                force_export=force_export,
                **extra,
            )
    return run_dir


def _order_check_job(
    plan: RunPlan, split: Split, seed: int
) -> tuple[ModelPlan, Split, dict[str, Any]]:
    """The order check (:mod:`recbench.tasks.ranking.order_check`): the chosen model, trained on shuffled
    training sequences, reading each of the benchmark's queries in a shuffled order."""
    model_plan = next(m for m in plan.models if m.label == plan.order_check)
    return (
        model_plan,
        ordering.shuffled_training(split, seed),
        {
            "ablation": ordering.ORDER_SHUFFLED,
            "reads": lambda model: ordering.ShuffledInputs(model, seed),
        },
    )


def _exclude_seen(options: EvaluationOptions, data: PreparedData) -> bool:
    if options.exclude_seen == "auto":
        return not bool(data.statistics.get("has_repeats", False))
    return options.exclude_seen == "on"


def cell_key(
    plan: RunPlan,
    model: ModelPlan,
    data: PreparedData,
    protocol: str,
    seed: int,
    ablation_id: str | None = None,
) -> str:
    """Hash of everything that changes a cell's result."""
    resolved = plan.resolved()
    payload = {
        "recbench": __version__,
        "plugin_api": PLUGIN_API_VERSION,
        "model": resolved["models"][model.label],
        "model_distribution": [model.info.distribution, model.info.distribution_version],
        "dataset": data.key,
        "split": resolved["split"],
        "eval": resolved["eval"],
        "metrics": resolved["metrics"],
        "cutoffs": resolved["cutoffs"],
        "protocol": protocol,
        "seed": seed,
        **({"ablation": ablation_id, "ablation_version": ordering.VERSION} if ablation_id else {}),
    }
    return key_of(payload)


def _run_model(
    run_dir: RunDirectory,
    plan: RunPlan,
    model_plan: ModelPlan,
    data: PreparedData,
    split: Split,
    seed: int,
    test_queries: Mapping[str, Queries],
    valid_queries: Queries | None,
    metrics: Mapping[str, Any],
    exclude_seen: bool,
    device: torch.device,
    progress: Progress,
    registry: Registry | None = None,
    *,
    export_only: bool = False,
    force_export: bool = False,
    ablation: str | None = None,
    reads: Callable[[Any], Any] | None = None,
) -> None:
    """Fit one model on ``split`` and write its cells; ``reads`` wraps the trained model
    for every evaluation (validation and test), as the order check does."""
    as_evaluated = reads or (lambda model: model)
    label = model_plan.label + (f" ({ablation})" if ablation else "")
    names = {p: cell_name(data.name, label, p, seed) for p in plan.protocols}
    keys = {p: cell_key(plan, model_plan, data, p, seed, ablation) for p in plan.protocols}
    pending = []
    for protocol in plan.protocols:
        existing = run_dir.read_cell(names[protocol])
        if export_only or (
            existing is not None
            and existing.get("key") == keys[protocol]
            and existing.get("status") == "ok"
        ):
            continue
        pending.append(protocol)
    export = (
        not ablation
        and plan.export.enabled
        and (force_export or not latency.record_path(run_dir.path, label, seed).is_file())
    )
    if not pending and not export:
        progress.log(f"{label} (seed {seed}): finished earlier, skipped", style="dim")
        return

    item_counts = split.train.item_counts()
    evaluation = plan.evaluation
    batch_size = evaluation.batch_size or None
    base = {
        **model_plan.cell_fields(label),
        **({"ablation": ablation} if ablation else {}),
        "dataset": data.name,
        "dataset_key": data.key,
        "seed": seed,
        "split": {
            **as_dict(plan.split),
            "train_users": len(split.train),
            "valid_users": len(split.valid),
            "test_users": len(split.test),
        },
        "policies": {"exclude_seen": exclude_seen, "ties": evaluation.ties},
        "cutoffs": list(plan.config.cutoffs),
    }

    def validate(model: Any) -> float:
        assert valid_queries is not None
        metric_id, _, k = evaluation.validation_metric.partition("@")
        result = evaluate(
            as_evaluated(model),
            valid_queries,
            {metric_id: metrics[metric_id]} if metric_id in metrics else {},
            cutoffs=(int(k),),
            item_counts=item_counts,
            device=device,
            exclude_seen=exclude_seen,
            ties=evaluation.ties,
            progress=Progress.silent(),
            batch_size=batch_size,
        )
        return result.summaries[evaluation.validation_metric].mean

    ctx = FitContext(
        n_items=data.sequences.n_items,
        device=device,
        seed=seed,
        item_counts=item_counts,
        progress=progress,
        validate=validate
        if valid_queries is not None and evaluation.validation_metric.partition("@")[0] in metrics
        else None,
        validation_metric=evaluation.validation_metric,
        registry=registry,
        checkpoint_dir=run_dir.path / "checkpoints" / cell_name(data.name, label, "fit", seed),
    )
    done: set[str] = set()
    try:
        seed_everything(seed)
        model = model_plan.info.cls(model_plan.options)
        progress.log(f"Training {label} on {data.name} (seed {seed}, {len(split.train):,} users)")
        started = time.perf_counter()
        model.fit(split.train, valid_queries, ctx)
        fit_seconds = time.perf_counter() - started
        for protocol in pending:
            result = evaluate(
                as_evaluated(model),
                test_queries[protocol],
                metrics,
                cutoffs=plan.config.cutoffs,
                item_counts=item_counts,
                device=device,
                exclude_seen=exclude_seen,
                ties=evaluation.ties,
                progress=progress,
                batch_size=batch_size,
                description=f"Evaluating {label} ({protocol}, seed {seed})",
            )
            run_dir.write_cell(
                names[protocol],
                _ok_cell(base, keys[protocol], protocol, result, fit_seconds),
                result.per_query,
            )
            done.add(protocol)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        progress.log(f"{label} (seed {seed}) failed: {reason}", style="red")
        for protocol in pending:
            if protocol in done:
                continue
            failed = dict(
                base,
                key=keys[protocol],
                protocol=protocol,
                status="failed",
                error=reason,
                traceback=traceback.format_exc(limit=8),
            )
            run_dir.write_cell(names[protocol], failed, {})
    else:
        if export:
            latency.benchmark_model(
                model,
                run_path=run_dir.path,
                label=label,
                model_id=model_plan.info.id,
                dataset=data.name,
                seed=seed,
                queries=test_queries[plan.protocols[0]],
                n_items=data.sequences.n_items,
                top_k=plan.export.top_k or max(plan.config.cutoffs),
                options=plan.export,
                device=device,
                progress=progress,
            )


def _ok_cell(
    base: Mapping[str, Any], key: str, protocol: str, result: EvaluationResult, fit_seconds: float
) -> dict[str, Any]:
    return dict(
        base,
        key=key,
        protocol=protocol,
        status="ok",
        n_queries=result.n_queries,
        n_users=result.n_users,
        metrics={
            name: {"mean": s.mean, "ci95": s.ci95, "n": s.n, "per_query": name in result.per_query}
            for name, s in result.summaries.items()
        },
        timing={
            "fit_seconds": fit_seconds,
            "eval_seconds": result.seconds,
            "queries_per_second": result.queries_per_second,
        },
    )
