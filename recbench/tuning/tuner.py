"""Runs a tune: checks the request, then one study per model, each with the same budget,
then writes ``tuned.toml`` and ``report.md`` into the output folder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import evaluation_key
from recbench.config.search_space import describe_space
from recbench.config.settings import Settings
from recbench.data.prepare import PreparedData, prepare_dataset
from recbench.environment import resolve_device
from recbench.progress import Progress
from recbench.registry import PluginInfo, Registry
from recbench.runner.executor_options import ExecutorOptions, open_executor
from recbench.tuning import study as studies
from recbench.tuning.budget import CONFIGURED, Budget, counted_trials, model_budget, trial_seconds
from recbench.tuning.objective import (
    TrialSetup,
    TuningData,
    objective,
    tuning_split,
)
from recbench.tuning.plan import TunePlan, TuneRequest, plan_tune
from recbench.tuning.report import write_report
from recbench.tuning.space import configured_point
from recbench.tuning.tuned_config import write_tuned_config

TUNED_CONFIG = "tuned.toml"
REPORT = "report.md"


def tune(
    request: TuneRequest, *, registry: Registry, settings: Settings, progress: Progress
) -> Path:
    """Run ``request``'s studies (resuming those in its folder); returns the folder."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plan = plan_tune(request, registry)
    out = request.out
    url = studies.storage_url(out, request.storage)
    handle = studies.lock(out)
    try:
        prepared, data = _tuning_data(plan, registry, settings, progress)
        storage = studies.open_storage(url)
        progress.log(
            f"Tuning {', '.join(i.id for i in plan.models)} on {prepared.name} for "
            f"{request.metric} ({plan.protocol}): {request.budget.describe()}, "
            f"{len(data.train):,} training and {len(data.valid):,} validation users "
            f"(no test user), seed {request.seed}"
        )
        try:
            for info in plan.models:
                setup = _setup(plan, info, prepared)
                study = studies.open_study(
                    storage,
                    info.id,
                    setup,
                    seed=request.seed,
                    pruning=request.pruning,
                    where=url,
                    # Studies made before content keys recorded the files' key.
                    earlier_setup={**setup, "data_key": prepared.source_key},
                )
                interrupted = studies.mark_interrupted(study)
                if interrupted:
                    progress.log(
                        f"{info.id}: {interrupted} trial(s) of an interrupted tune marked failed "
                        "(not counted)",
                        style="yellow",
                    )
                _queue_configured(plan, info, study)
                budget = model_budget(request.budget, info)
                study.set_user_attr("budget", budget.as_dict())
                _run_study(
                    plan, info, study, budget, url, registry, settings, progress, prepared, data
                )
        except KeyboardInterrupt:
            # What the stopped tune finished is kept: the outputs say which studies
            # are unfinished (the same command continues them).
            _write_outputs(out, plan, storage)
            raise
        _write_outputs(out, plan, storage)
    finally:
        handle.close()
    return out


def _write_outputs(out: Path, plan: TunePlan, storage: Any) -> None:
    write_tuned_config(out / TUNED_CONFIG, plan, storage)
    write_report(out / REPORT, plan, storage)


def _tuning_data(
    plan: TunePlan, registry: Registry, settings: Settings, progress: Progress
) -> tuple[PreparedData, TuningData]:
    run = plan.run
    prepared = prepare_dataset(
        run.config.dataset, run.dataset_options, run.preprocess, registry, settings, progress
    )
    run.task.check_data(run, prepared)
    data = tuning_split(
        prepared.sequences,
        run.task_options.split,
        plan.split_seed,
        plan.request.validation_users,
        plan.protocol,
    )
    return prepared, data


def _setup(plan: TunePlan, info: PluginInfo, prepared: PreparedData) -> dict[str, Any]:
    """What a model's study depends on (its fingerprint is a key of this)."""
    run, request = plan.run, plan.request
    return {
        "dataset": prepared.name,
        "data_key": prepared.key,
        # split.seed only when set: studies made before the option existed hold.
        "split": {
            key: value
            for key, value in as_dict(run.task_options.split).items()
            if key != "seed" or value is not None
        },
        "eval": evaluation_key(as_dict(run.task_options.evaluation), trials=True),
        "seed": request.seed,
        "validation_users": request.validation_users,
        "protocol": plan.protocol,
        "metric": request.metric,
        # Only when off: studies made before the option existed were all pruned.
        **({} if request.pruning else {"pruning": False}),
        "model": info.id,
        "model_version": info.version,
        "model_distribution": f"{info.distribution} {info.distribution_version}",
        "fixed_options": {k: str(v) for k, v in _fixed(plan, info).items()},
        "space": describe_space(info.search_space or {}),
    }


def _queue_configured(plan: TunePlan, info: PluginInfo, study: optuna.Study) -> None:
    """A new study of a model with a search space starts from its configured options
    (defaults and fixed options)."""
    if not info.search_space:
        return
    fixed = _fixed(plan, info)
    configured = parse_options(info.cls.Options, dict(fixed), owner=f"model '{info.id}'")
    studies.start_from_configured(
        study, configured_point(info.search_space, as_dict(configured), fixed)
    )


def _fixed(plan: TunePlan, info: PluginInfo) -> dict[str, Any]:
    return dict(plan.run.config.options.get(info.id, {}))


def _trial_setup(
    plan: TunePlan,
    info: PluginInfo,
    registry: Registry,
    prepared: PreparedData,
    data: TuningData,
) -> TrialSetup:
    metric_id = plan.request.metric.partition("@")[0]
    metric_plan = next(m for m in plan.run.metrics if m.info.id == metric_id)
    return TrialSetup(
        model=info,
        fixed=_fixed(plan, info),
        data=data,
        prepared=prepared,
        evaluation=plan.run.task_options.evaluation,
        metric=plan.request.metric,
        metrics={metric_id: metric_plan.info.cls(metric_plan.options)},
        seed=plan.request.seed,
        device=resolve_device(plan.request.device),
        registry=registry,
    )


def _run_study(
    plan: TunePlan,
    info: PluginInfo,
    study: optuna.Study,
    budget: Budget,
    url: str,
    registry: Registry,
    settings: Settings,
    progress: Progress,
    prepared: PreparedData,
    data: TuningData,
) -> None:
    total = budget.trials if budget.trials is not None else budget.seconds
    announced = {t.number for t in counted_trials(study)}
    shown = [0.0]  # how much of the budget the bar shows as done
    # Wall time of earlier invocations, and of this one as recorded after each trial (so
    # that a killed tune's time is kept).
    earlier = float(study.user_attrs.get("wall_seconds", 0.0))
    started = time.perf_counter()
    with progress.task(f"Tuning {info.id}", total=total) as bar:

        def refresh() -> None:
            finished = counted_trials(study)
            if len(finished) > len(announced):
                record_wall_time()
            for trial in sorted(finished, key=lambda t: t.number):
                if trial.number not in announced:
                    announced.add(trial.number)
                    progress.log(trial_line(info.id, trial, study), style=_style(trial))
            done = len(finished) if budget.trials is not None else trial_seconds(finished)
            bar.advance(done - shown[0])
            shown[0] = done

        def record_wall_time() -> None:
            study.set_user_attr("wall_seconds", earlier + time.perf_counter() - started)

        refresh()
        if budget.spent(study):
            progress.log(f"{info.id}: budget reached earlier ({budget.describe()})", style="dim")
            return
        if plan.request.jobs == 1:
            setup = _trial_setup(plan, info, registry, prepared, data)
            run_trials(study, setup, budget, callback=lambda *_: refresh())
        else:
            _run_parallel(plan, info, study, budget, url, settings, progress, refresh)
        refresh()
        record_wall_time()


def run_trials(
    study: optuna.Study,
    setup: TrialSetup,
    budget: Budget,
    *,
    callback: Any = None,
    limit: int | None = None,
) -> int:
    """Run trials of ``study`` until its ``budget`` is spent, or ``limit`` trials ran (a
    failing trial is recorded as failed and the study goes on); returns how many ran."""

    def parse(values: dict[str, Any]) -> Any:
        return parse_options(setup.model.cls.Options, values, owner=f"model '{setup.model.id}'")

    run_trial = objective(setup, parse)
    callbacks = [callback] if callback is not None else []
    ran = 0
    while not budget.spent(study) and (limit is None or ran < limit):
        study.optimize(run_trial, n_trials=1, catch=(Exception,), callbacks=callbacks)
        ran += 1
    return ran


def _run_parallel(
    plan: TunePlan,
    info: PluginInfo,
    study: optuna.Study,
    budget: Budget,
    url: str,
    settings: Settings,
    progress: Progress,
    refresh: Callable[[], None],
) -> None:
    """``--jobs N``: trials in the runner's worker processes, one trial a unit, sharing the
    study's storage. The pool stops its workers when the tune is interrupted, and a worker
    whose tune was killed leaves by itself, so no trial outlives the command."""
    request = plan.request
    gpus = torch.cuda.device_count() if resolve_device(request.device).type == "cuda" else 0
    with open_executor(
        ExecutorOptions(jobs=request.jobs), threads=torch.get_num_threads(), gpus=gpus
    ) as pool:
        for _ in range(request.jobs):
            pool.submit(_one_trial, request, info.id, url, settings)
        for done in pool.completed():
            if done.error is not None:
                raise done.error
            if done.lost is not None:
                progress.log(f"{info.id}: a trial was lost: {done.lost}", style="red")
            refresh()
            if (done.value or done.lost) and not budget.spent(study):
                pool.submit(_one_trial, request, info.id, url, settings)


#: What a worker process of a parallel tune has loaded: per (model, storage URL), the
#: study and the trial setup (data prepared and split once per worker, not per trial).
_WORKER_STUDIES: dict[tuple[str, str], tuple[optuna.Study, TrialSetup, Budget]] = {}


def _one_trial(request: TuneRequest, model_id: str, url: str, settings: Settings) -> bool:
    """A unit of a parallel tune: one trial of ``model_id``'s study, unless its budget is
    spent; returns whether a trial ran."""
    key = (model_id, url)
    if key not in _WORKER_STUDIES:
        from recbench.registry import discover

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        registry = discover(allow=settings.loaded_plugins, deny=settings.disabled_plugins)
        plan = plan_tune(request, registry)
        info = registry.get("model", model_id)
        prepared, data = _tuning_data(plan, registry, settings, Progress.silent())
        study = optuna.load_study(
            study_name=model_id,
            storage=studies.open_storage(url),
            sampler=studies.sampler(request.seed + os.getpid()),
            pruner=studies.pruner(request.pruning),
        )
        setup = _trial_setup(plan, info, registry, prepared, data)
        _WORKER_STUDIES[key] = (study, setup, model_budget(request.budget, info))
    study, setup, budget = _WORKER_STUDIES[key]
    return run_trials(study, setup, budget, limit=1) > 0


def trial_line(model: str, trial: FrozenTrial, study: optuna.Study) -> str:
    """One line about a finished trial: its value, or why it was pruned or failed."""
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else 0.0
    )
    head = f"{model} trial {trial.number}" + (
        " (configured options)" if trial.user_attrs.get(CONFIGURED) else ""
    )
    if trial.state == TrialState.COMPLETE:
        best = study.best_value if study.best_trial is not None else trial.value
        return f"{head}: {trial.value:.4f} (best {best:.4f}, {seconds:.0f}s)"
    if trial.state == TrialState.PRUNED:
        return f"{head}: pruned after epoch {trial.last_step} ({seconds:.0f}s)"
    return f"{head}: failed: {trial.user_attrs.get('error', 'see the study')}"


def _style(trial: FrozenTrial) -> str | None:
    return {TrialState.PRUNED: "dim", TrialState.FAIL: "red"}.get(trial.state)
