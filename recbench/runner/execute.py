"""Runs a benchmark: prepare data, split, train every model, evaluate every protocol.

One loop serves every task (:mod:`recbench.tasks.base`): for each seed (and each fold of
the seed, when the task's split is a k-fold one: :meth:`recbench.tasks.base.Task.folds`)
the run's task splits the data, then each model of the run (and, on the first seed, each ablation the
task asks for, such as the ranking task's order check) is fitted and evaluated under
every protocol of the run. Everything the user can get wrong (names, options, protocols)
is checked before any work starts (:func:`plan_run`). Each (dataset, model, protocol,
seed[, fold]) cell is written as soon as it is finished, so an interrupted or partly failed run
keeps what it computed; ``resume`` skips cells that are finished with the same key and
recomputes damaged ones (:class:`recbench.results.DamagedCell`). A resume refuses a
configuration that changes what the run's cells are computed from (:func:`resumed_config`);
it may add models and seeds, and the stored configuration then holds them all. A model
that raises is marked failed and the run goes on; a write that fails for lack of space
(:class:`recbench.data.files.WriteError`) stops the run without blaming the model. A run
that fails before its first model is trained leaves no run directory behind (unless the
directory was there before).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from recbench.config.options import parse_options
from recbench.config.run_config import RunConfig, check_sections
from recbench.config.settings import Settings
from recbench.data.files import WriteError
from recbench.data.prepare import PreparedData, prepare_dataset
from recbench.data.preprocess import PreprocessOptions
from recbench.data.protocols import canonical_protocol
from recbench.environment import describe_environment, resolve_device
from recbench.errors import ConfigError
from recbench.hookspecs import PLUGIN_API_VERSION
from recbench.progress import Progress
from recbench.registry import Registry
from recbench.results import DamagedCell, RunDirectory, cell_name, key_of, read_json
from recbench.runner.cells import (
    FitInputs,
    Fits,
    FitSpec,
    fit_in_worker,
    fit_place,
    record_outcome,
)
from recbench.runner.executor_options import IN_PROCESS, ExecutorOptions, open_executor
from recbench.runner.executors import Executor, InProcess, Resources
from recbench.serve import latency
from recbench.serve.export import ExportOptions
from recbench.tasks.base import Job, RunPlan, TaskRun
from recbench.tasks.catalog import TASKS, task_for
from recbench.tasks.plans import ModelPlan, metric_plans, model_plans, task_metrics
from recbench.version import __version__


def plan_run(config: RunConfig, registry: Registry) -> RunPlan:
    """Look up every name and parse every option of ``config``; raise on the first error."""
    task = task_for(config, registry)
    options = config.options
    models = tuple(
        plan for name in config.models for plan in model_plans(registry.get("model", name), options)
    )
    metric_infos = [registry.get("metric", name) for name in config.metrics] or task_metrics(
        registry, task.name
    )
    if not metric_infos:
        raise ConfigError(
            f"no metric of the {task.name} task is registered", hint="check 'recbench list metrics'"
        )
    metrics = metric_plans(metric_infos, options)
    protocols = tuple(dict.fromkeys(canonical_protocol(p) for p in config.protocols))
    task.refuse_sections(options, protocols, [t for t in TASKS if t is not task])
    dataset_id = config.dataset.partition(":")[0]
    dataset_info = registry.get("dataset", dataset_id)
    task_options = task.plan_options(config, registry, models, metrics)
    known_sections = {"preprocess", "export", *task.sections}
    known_sections |= {m.label for m in models} | {m.info.id for m in models}
    known_sections |= {dataset_info.id, dataset_id} | {m.info.id for m in metrics}
    check_sections(options, known_sections)
    return RunPlan(
        config=config,
        task=task,
        models=models,
        metrics=metrics,
        protocols=protocols,
        dataset_options=dict(options.get(dataset_info.id, {})) | dict(options.get(dataset_id, {})),
        preprocess=parse_options(
            PreprocessOptions,
            {**task.preprocess_defaults, **options.get("preprocess", {})},
            owner="section 'preprocess'",
        ),
        export=parse_options(ExportOptions, options.get("export", {}), owner="section 'export'"),
        task_options=task_options,
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
    executor: ExecutorOptions = IN_PROCESS,
) -> RunDirectory:
    """Run the benchmark described by ``config`` into the run directory ``out``.

    After its evaluation each model is exported and timed (:mod:`recbench.serve.latency`)
    unless ``export.enabled`` is off or the task exports nothing (rating models have no
    one-step cell); a model whose latency record exists is not redone unless
    ``force_export``. With ``export_only`` (model labels; empty: all) nothing is
    evaluated and the run's files are kept: the models whose record is missing (or all,
    with ``force_export``) are trained again with the run's configuration and seeds,
    then exported and timed (``recbench export``).

    ``executor`` says where the fits run (:mod:`recbench.runner.executors`): in this
    process one after another (the default), in ``--jobs N`` worker processes, or as Ray
    tasks. Whichever runs them, this process alone writes the run directory, and the
    results are the same. Parallel fits are not exported or timed (concurrent fits make
    timings noisy): ``recbench export`` does it afterwards.
    """
    if not config.models:
        raise ConfigError(
            "no model given",
            where="--models",
            hint="pass --models, e.g. --models pop, or set models in the --config file",
        )
    executor.check()
    plan = plan_run(config, registry)
    task = plan.task
    device = resolve_device(config.device)
    if task.no_export:
        if export_only is not None:
            progress.log(f"{task.no_export.capitalize()}: nothing to export", style="dim")
            return RunDirectory.open(out)
        if "export" in config.options and plan.export.enabled:
            progress.log(f"ONNX export and latency are skipped: {task.no_export}", style="dim")
    elif export_only is not None:
        plan = replace(plan, export=replace(plan.export, enabled=True))
    elif executor.parallel and plan.export.enabled:
        progress.log(
            "ONNX export and latency are not measured by parallel fits (concurrent fits make "
            "timings noisy): run `recbench export RUN_DIR` afterwards",
            style="dim",
        )
        plan = replace(plan, export=replace(plan.export, enabled=False))
    RunDirectory.check_available(out, resume=resume)
    resolved = plan.resolved()
    stored = _stored_config(out) if export_only is None else None
    if stored is not None:
        resolved = resumed_config(stored, resolved, out)
    data = prepare_dataset(
        config.dataset, plan.dataset_options, plan.preprocess, registry, settings, progress
    )
    task.check_data(plan, data)
    if stored is not None:
        _refuse_other_data(out, data)
    run = TaskRun(
        plan=plan,
        data=data,
        device=device,
        metrics={m.info.id: m.info.cls(m.options) for m in plan.metrics},
        progress=progress,
        registry=registry,
    )
    fits = Fits(run, None if export_only is None else tuple(export_only))
    specs = _planned_fits(
        RunDirectory(out), fits, export_only=export_only is not None, force_export=force_export
    )
    _refuse_idle_jobs(executor, specs)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    opened = (
        open_executor(executor, threads=torch.get_num_threads(), gpus=gpus)
        if specs
        else InProcess()
    )
    with opened as pool:
        created = not out.exists()
        run_dir = RunDirectory.create(out, resume=resume or export_only is not None)
        trained = False
        try:
            if export_only is None:  # an export keeps the record of the run it exports
                run_dir.write_run_files(
                    command=command,
                    config=resolved,
                    environment=describe_environment(registry, device),
                    data=data,
                    **task.dataset_fields(plan, data),
                )
            trained = bool(specs)
            _run_fits(run_dir, fits, specs, pool, executor, settings)
        except WriteError as exc:
            _remove_unused(out, created and not trained)
            hint = f"{exc.hint}, then rerun with --resume" if trained else exc.hint
            raise WriteError(exc.what, where=exc.where, hint=hint) from None
        except BaseException:
            _remove_unused(out, created and not trained)
            raise
    return run_dir


def _planned_fits(
    run_dir: RunDirectory, fits: Fits, *, export_only: bool, force_export: bool
) -> list[FitSpec]:
    """The fits the run still has to do, seed by seed and fold by fold (a fit whose cells
    are finished with the same key, and whose model needs no export, is logged as
    skipped)."""
    run = fits.run
    first_seed = run.plan.config.seeds[0]
    folds = run.plan.task.folds(run)
    specs = []
    for seed in run.plan.config.seeds:
        for fold in folds:
            first = seed == first_seed and fold == folds[0]
            jobs = fits.jobs(seed, fold) if first else [Job(m, None) for m in fits.models()]
            for job in jobs:
                spec = _planned_fit(
                    run_dir,
                    run,
                    job,
                    seed,
                    fold,
                    first_fold=fold == folds[0],
                    export_only=export_only,
                    force_export=force_export,
                )
                if spec is None:
                    run.progress.log(
                        f"{job.label} ({fit_place(seed, fold)}): finished earlier, skipped",
                        style="dim",
                    )
                else:
                    specs.append(spec)
    return specs


def _planned_fit(
    run_dir: RunDirectory,
    run: TaskRun,
    job: Job,
    seed: int,
    fold: int | None,
    *,
    first_fold: bool,
    export_only: bool,
    force_export: bool,
) -> FitSpec | None:
    """The fit of ``job`` on ``seed`` (and ``fold`` of a k-fold split): its cells that are
    missing, damaged or computed with another key; ``None`` when there is nothing to do.
    A model is exported and timed on the first fold of a seed only."""
    plan, data = run.plan, run.data
    label = job.label
    names = {p: cell_name(data.name, label, p, seed, fold) for p in plan.protocols}
    keys = {p: cell_key(plan, job.model, data, p, seed, job.ablation, fold) for p in plan.protocols}
    pending, damaged = [], {}
    for protocol in [] if export_only else plan.protocols:
        try:
            existing = run_dir.read_cell(names[protocol])
        except DamagedCell as exc:
            existing, damaged[protocol] = None, exc.reason
        if (
            existing is not None
            and existing.get("key") == keys[protocol]
            and existing.get("status") == "ok"
        ):
            continue
        pending.append(protocol)
    export = (
        not plan.task.no_export
        and not job.ablation
        and first_fold
        and plan.export.enabled
        and (force_export or not latency.record_path(run_dir.path, label, seed).is_file())
    )
    if not pending and not export:
        return None
    return FitSpec(label, seed, tuple(pending), names, keys, damaged, export, fold)


def _refuse_idle_jobs(executor: ExecutorOptions, specs: list[FitSpec]) -> None:
    """Refuse more local jobs than fits to run (a worker would have nothing to do)."""
    if executor.kind == "local" and 0 < len(specs) < executor.jobs:
        fits = f"{len(specs)} fit{'s' if len(specs) > 1 else ''}"
        raise ConfigError(
            f"--jobs {executor.jobs} is more jobs than the run has fits of a model on a seed "
            f"to compute ({fits})",
            where="--jobs",
            hint=f"pass --jobs {len(specs)} or fewer",
        )


def _run_fits(
    run_dir: RunDirectory,
    fits: Fits,
    specs: list[FitSpec],
    executor: Executor,
    options: ExecutorOptions,
    settings: Settings,
) -> None:
    """Run ``specs`` on ``executor``, writing each outcome as it arrives."""
    run = fits.run
    progress = run.progress
    if not options.parallel:
        for spec in specs:
            executor.submit(fits.fit, spec, run_dir)
        for _ in executor.completed():
            pass
        return
    inputs = executor.share(
        FitInputs(
            token=uuid.uuid4().hex,
            plan=run.plan,
            data=run.data,
            settings=settings,
            export_only=fits.export_only,
        )
    )
    resources = Resources(cpus=1, gpus=1 if run.device.type == "cuda" else 0)
    tickets = {executor.submit(fit_in_worker, inputs, s, resources=resources): s for s in specs}
    jobs = f"{options.jobs} jobs" if options.kind == "local" else "Ray"
    progress.log(f"Running {len(specs)} fits ({jobs})")
    with progress.task(f"Fits ({jobs})", total=len(specs)) as bar:
        for done in executor.completed():
            spec = tickets[done.ticket]
            if done.error is not None:
                raise done.error
            if done.lost is not None:
                fits.lost(run_dir, spec, done.lost)
            else:
                record_outcome(run_dir, done.value, progress)
                progress.log(f"{spec.label} ({fit_place(spec.seed, spec.fold)}): done")
            bar.advance()


#: Entries of the resolved configuration that a resume may change: models and seeds may
#: be added (the stored configuration then holds the union); export and device settings do
#: not enter a cell's key.
RESUMABLE_ENTRIES = frozenset(
    {"models", "model_defaults", "model_order", "seeds", "export", "device"}
)


def resumed_config(stored: Mapping[str, Any], resolved: Mapping[str, Any], out: Path) -> dict:
    """The configuration to store when the run in ``out``, made with ``stored``, is
    resumed with ``resolved``: ``resolved`` with the models and seeds of both.

    Raises
    ------
    ConfigError
        ``resolved`` changes what the stored run's cells were computed from: an entry
        other than :data:`RESUMABLE_ENTRIES` (present in ``stored``), a stored model's
        configuration, or removes a seed.
    """
    changes = [
        change
        for entry in sorted(set(stored) - RESUMABLE_ENTRIES)
        for change in _differences(entry, stored[entry], resolved.get(entry))
    ]
    stored_models, models = stored.get("models", {}), resolved.get("models", {})
    for label in [label for label in stored_models if label in models]:
        changes += _differences(f"{label}", stored_models[label], models[label])
    removed = [seed for seed in stored.get("seeds", []) if seed not in resolved.get("seeds", [])]
    if removed:
        changes.append(f"seed{'s' if len(removed) > 1 else ''} {_words(removed)} removed")
    if changes:
        shown = "; ".join(changes[:3]) + (
            f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        )
        raise ConfigError(
            f"--resume with another configuration ({shown})",
            where=str(out),
            hint="resume with the same arguments (models and seeds may be added), "
            "or choose another --out for the new configuration",
        )
    merged = dict(resolved)
    merged["models"] = {**stored_models, **models}
    merged["model_defaults"] = {**stored.get("model_defaults", {}), **resolved["model_defaults"]}
    order = list(stored.get("model_order") or stored_models)
    merged["model_order"] = order + [m for m in resolved["model_order"] if m not in order]
    seeds = list(stored.get("seeds", []))
    merged["seeds"] = seeds + [seed for seed in resolved["seeds"] if seed not in seeds]
    return merged


def _differences(name: str, before: Any, after: Any) -> list[str]:
    """``name: before -> after`` for each leaf that differs (dotted names below ``name``)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return [
            change
            for key in sorted(set(before) | set(after), key=str)
            for change in _differences(f"{name}.{key}", before.get(key), after.get(key))
        ]
    if before == after:
        return []
    return [f"{name}: {_shown(before)} -> {_shown(after)}"]


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _words(values: list[Any]) -> str:
    return ", ".join(map(str, values))


def _stored_config(out: Path) -> dict[str, Any] | None:
    """The resolved configuration stored in the run directory ``out`` (``None``: none)."""
    path = out / "config.json"
    if not path.is_file():
        return None
    stored = read_json(path)
    config = stored.get("config") if isinstance(stored, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(
            "the run's config.json holds no configuration",
            where=str(path),
            hint="choose another --out (this run cannot be resumed safely)",
        )
    return config


def _refuse_other_data(out: Path, data: PreparedData) -> None:
    """Refuse to resume the run in ``out`` on data prepared differently than its own."""
    path = out / "dataset.json"
    stored = read_json(path) if path.is_file() else {}
    # A run started before content keys recorded the files' key (source_key).
    if isinstance(stored, dict) and stored.get("key") not in (None, data.key, data.source_key):
        raise ConfigError(
            f"--resume on other data: {data.name} was prepared differently than when the "
            "run started (its files changed)",
            where=str(out),
            hint="choose another --out for a run on the new data",
        )


def _remove_unused(out: Path, remove: bool) -> None:
    """Remove the run directory ``out`` this call created when nothing was trained in it."""
    if remove and out.is_dir():
        shutil.rmtree(out, ignore_errors=True)


def cell_key(
    plan: RunPlan,
    model: ModelPlan,
    data: PreparedData,
    protocol: str,
    seed: int,
    ablation: str | None = None,
    fold: int | None = None,
) -> str:
    """Hash of everything that changes a cell's result (``fold``: of a k-fold split)."""
    resolved = plan.resolved()
    payload = {
        "recbench": __version__,
        "plugin_api": PLUGIN_API_VERSION,
        "model": resolved["models"][model.label],
        "model_distribution": [model.info.distribution, model.info.distribution_version],
        "dataset": data.key,
        "metrics": resolved["metrics"],
        "protocol": protocol,
        "seed": seed,
        **({"fold": fold} if fold is not None else {}),
        **plan.task.key_fields(resolved, ablation),
    }
    return key_of(payload)
