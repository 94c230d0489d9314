"""A fit: one (model, seed) of a run -- trained once, evaluated under every protocol --
as a work unit that any executor (:mod:`recbench.runner.executors`) can run.

The driver plans each fit (:class:`FitSpec`: which cells are pending, their names and
keys, whether the model is exported) from the run directory, and is the only one that
writes to it. In the driver's own process (:class:`InProcess`) a fit writes its cells
straight into the run directory as each protocol finishes, as it always did. In a worker
(:func:`fit_in_worker`) it writes into a scratch folder of its own and hands back a
:class:`FitOutcome` -- its cell records, per-query arrays and files (checkpoints) -- that
the driver writes atomically (:func:`record_outcome`); the worker's log lines come back
with it. So ``--resume``, ``report`` and ``compare`` read the same run directory
whichever executor ran the cells.

A worker rebuilds what it needs from :class:`FitInputs` (the run's plan, the prepared
data, the settings), sent to it once: the registry of plugins (through the entry points,
as the driver found it), the seed's split (made again from the seed, so identical), and
the fit's job among the seed's jobs (the first seed's ablations included). Every fit seeds
the global generators itself (:func:`seed_everything`), so a fit gives the same result in
any process and in any order.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recbench.config.settings import Settings
from recbench.data.files import WriteError, write_bytes_atomic
from recbench.data.prepare import PreparedData
from recbench.environment import resolve_device
from recbench.progress import Progress
from recbench.registry import discover
from recbench.results import RunDirectory, cell_name
from recbench.runner.seeding import seed_everything
from recbench.serve import latency
from recbench.tasks.base import Evaluation, Job, RunPlan, TaskRun
from recbench.tasks.plans import ModelPlan

#: The folder of a run directory (and of a worker's scratch folder) holding checkpoints.
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class FitSpec:
    """One fit as the driver planned it: the job's ``label`` (the model's label, with its
    ablation), ``seed``, the ``pending`` protocols (in the run's order) with their cell
    ``names`` and ``keys``, the protocols whose cells were ``damaged`` (and why), and
    whether the model is exported and timed after its evaluation (``export``), and the
    ``fold`` of a k-fold split (``None``: the seed's one split)."""

    label: str
    seed: int
    pending: tuple[str, ...]
    names: Mapping[str, str]
    keys: Mapping[str, str]
    damaged: Mapping[str, str] = field(default_factory=dict)
    export: bool = False
    fold: int | None = None


@dataclass(frozen=True)
class FitInputs:
    """What every fit of a run reads, sent to each worker once: the run's ``token`` (unique
    to the run), its ``plan``, the
    prepared ``data``, the ``settings`` (plugins to load) and the labels of the models
    that are only exported (``export_only``; ``None``: a benchmark run)."""

    token: str
    plan: RunPlan
    data: PreparedData
    settings: Settings
    export_only: tuple[str, ...] | None = None


@dataclass
class FitOutcome:
    """What a fit in a worker hands back: its ``cells`` (name, record, per-query arrays),
    its ``files`` (paths relative to the run directory, and their bytes) and its ``log``
    lines (message, style). A fit in the driver's process wrote everything itself and
    hands back an empty outcome."""

    cells: list[tuple[str, dict[str, Any], dict[str, np.ndarray]]] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    log: list[tuple[str, str | None]] = field(default_factory=list)


class CellSink(Protocol):
    """Where a fit writes: its cells, and files under ``path`` (a :class:`RunDirectory`)."""

    path: Path

    def write_cell(
        self, name: str, cell: Mapping[str, Any], per_query: Mapping[str, np.ndarray]
    ) -> None: ...


class Fits:
    """The fits of one run: the jobs of each seed, and running one of them.

    Keeps the split of the last seed it was asked for (fits come seed by seed), so that
    a run holds one split at a time, as it always did.
    """

    def __init__(self, run: TaskRun, export_only: tuple[str, ...] | None = None):
        self.run = run
        self.export_only = export_only
        self._split: tuple[tuple[int, int | None], Any] | None = None

    def models(self) -> list[ModelPlan]:
        """The run's models (those to export only, when exporting)."""
        return [
            model
            for model in self.run.plan.models
            if not self.export_only or model.label in self.export_only
        ]

    def jobs(self, seed: int, fold: int | None = None) -> list[Job]:
        """The jobs of ``seed`` (and ``fold``): the run's models (those to export only,
        when exporting), and on the first seed's first fold the task's ablations (never
        when exporting)."""
        plan, task = self.run.plan, self.run.plan.task
        if self._split is None or self._split[0] != (seed, fold):
            self._split = None  # the earlier split is not kept while splitting
            self._split = ((seed, fold), task.split(self.run, seed, fold))
        split = self._split[1]
        jobs = [Job(model, split) for model in self.models()]
        first_fold = fold == task.folds(self.run)[0]
        if seed == plan.config.seeds[0] and first_fold and self.export_only is None:
            jobs += task.ablations(self.run, split, seed)
        return jobs

    def job(self, seed: int, fold: int | None, label: str) -> Job:
        """The job of ``seed`` (and ``fold``) whose cells are labelled ``label``."""
        return next(job for job in self.jobs(seed, fold) if job.label == label)

    def _base_fields(self, run: TaskRun, job: Job, spec: FitSpec) -> dict[str, Any]:
        """The fields every cell of ``spec`` records."""
        return {
            **job.model.cell_fields(spec.label),
            **({"ablation": job.ablation} if job.ablation else {}),
            "dataset": run.data.name,
            "dataset_key": run.data.key,
            "seed": spec.seed,
            **({"fold": spec.fold} if spec.fold is not None else {}),
            **run.plan.task.cell_fields(run, job.split),
        }

    def fit(self, spec: FitSpec, sink: CellSink, *, progress: Progress | None = None) -> None:
        """Fit ``spec``'s model on its split, write its pending cells into ``sink`` (each
        as soon as it is evaluated), then export and time it when ``spec.export``.

        A model that raises gets failed cells for the protocols it did not finish; an
        interrupt or a write that fails stops the fit and is raised.
        """
        run = self.run if progress is None else replace(self.run, progress=progress)
        plan, task, data, progress = run.plan, run.plan.task, run.data, run.progress
        job, seed, label = self.job(spec.seed, spec.fold, spec.label), spec.seed, spec.label
        at = fit_place(seed, spec.fold)
        base = self._base_fields(run, job, spec)
        done: set[str] = set()
        try:
            seed_everything(seed)
            model = job.model.info.cls(job.model.options)
            base.update(task.model_fields(model))
            progress.log(f"Training {label} on {data.name} ({at}, {task.training_size(job.split)})")
            started = time.perf_counter()
            task.fit(
                run,
                job,
                model,
                checkpoint_dir=sink.path
                / CHECKPOINTS
                / cell_name(data.name, label, "fit", seed, spec.fold),
            )
            fit_seconds = time.perf_counter() - started
            for protocol in spec.pending:
                result = task.evaluate(
                    run, job, model, protocol, f"Evaluating {label} ({protocol}, {at})"
                )
                sink.write_cell(
                    spec.names[protocol],
                    _ok_cell(base, spec.keys[protocol], protocol, result, fit_seconds),
                    result.per_query,
                )
                done.add(protocol)
                if protocol in spec.damaged:
                    progress.log(
                        f"cell {spec.names[protocol]} was damaged ({spec.damaged[protocol]}): "
                        "recomputed",
                        style="yellow",
                    )
                if result.headline:
                    progress.log(f"{label} ({at}): {result.headline}")
        except (KeyboardInterrupt, WriteError):
            raise  # not the model's fault: the run stops, the cell is not marked failed
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            progress.log(f"{label} ({at}) failed: {reason}", style="red")
            for protocol in spec.pending:
                if protocol not in done:
                    sink.write_cell(
                        spec.names[protocol],
                        failed_cell(
                            base,
                            spec.keys[protocol],
                            protocol,
                            reason,
                            traceback.format_exc(limit=8),
                        ),
                        {},
                    )
        else:
            if spec.export:
                latency.benchmark_model(
                    model,
                    run_path=sink.path,
                    label=label,
                    model_id=job.model.info.id,
                    dataset=data.name,
                    seed=seed,
                    queries=task.export_queries(job.split, plan.protocols[0]),
                    n_items=data.sequences.n_items,
                    top_k=plan.export.top_k or max(plan.config.cutoffs),
                    options=plan.export,
                    device=run.device,
                    progress=progress,
                )

    def lost(self, run_dir: RunDirectory, spec: FitSpec, reason: str) -> None:
        """Mark ``spec``'s pending cells failed: the worker that ran the fit died."""
        job = self.job(spec.seed, spec.fold, spec.label)
        base = self._base_fields(self.run, job, spec)
        at = fit_place(spec.seed, spec.fold)
        self.run.progress.log(f"{spec.label} ({at}) failed: {reason}", style="red")
        for protocol in spec.pending:
            record = failed_cell(base, spec.keys[protocol], protocol, reason, "")
            run_dir.write_cell(spec.names[protocol], record, {})


def fit_place(seed: int, fold: int | None) -> str:
    """``"seed 0"``, or ``"seed 0, fold 2"`` for a fold of a k-fold split."""
    return f"seed {seed}" + (f", fold {fold}" if fold is not None else "")


def failed_cell(
    base: Mapping[str, Any], key: str, protocol: str, reason: str, trace: str
) -> dict[str, Any]:
    """The record of a cell whose fit failed with ``reason``."""
    return dict(base, key=key, protocol=protocol, status="failed", error=reason, traceback=trace)


def _ok_cell(
    base: Mapping[str, Any], key: str, protocol: str, result: Evaluation, fit_seconds: float
) -> dict[str, Any]:
    return dict(
        base,
        key=key,
        protocol=protocol,
        status="ok",
        n_queries=result.n_queries,
        n_users=result.n_users,
        metrics={name: dict(entry) for name, entry in result.metrics.items()},
        timing={
            "fit_seconds": fit_seconds,
            "eval_seconds": result.seconds,
            "queries_per_second": result.queries_per_second,
        },
    )


# -- in a worker -----------------------------------------------------------------------


class _RecordedLog(Progress):
    """A worker's progress: no bars; log lines kept for the driver to print."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[tuple[str, str | None]] = []

    def log(self, message: str, *, style: str | None = None) -> None:
        self.lines.append((message, style))


@dataclass
class _Collected:
    """A worker's sink: cells kept in memory, files written under a scratch ``path``."""

    path: Path
    cells: list[tuple[str, dict[str, Any], dict[str, np.ndarray]]] = field(default_factory=list)

    def write_cell(
        self, name: str, cell: Mapping[str, Any], per_query: Mapping[str, np.ndarray]
    ) -> None:
        self.cells.append((name, dict(cell), {k: np.asarray(v) for k, v in per_query.items()}))


#: The fits of the run a worker process serves (one run at a time).
_worker_fits: tuple[str, Fits] | None = None


def _fits_for(inputs: FitInputs) -> Fits:
    global _worker_fits
    if _worker_fits is None or _worker_fits[0] != inputs.token:
        settings = inputs.settings
        plan = inputs.plan
        run = TaskRun(
            plan=plan,
            data=inputs.data,
            device=resolve_device(plan.config.device),
            metrics={m.info.id: m.info.cls(m.options) for m in plan.metrics},
            progress=Progress.silent(),
            registry=discover(allow=settings.loaded_plugins, deny=settings.disabled_plugins),
        )
        _worker_fits = (inputs.token, Fits(run, inputs.export_only))
    return _worker_fits[1]


def fit_in_worker(inputs: FitInputs, spec: FitSpec) -> FitOutcome:
    """Run the fit ``spec`` in a worker process (see the module docstring)."""
    fits = _fits_for(inputs)
    log = _RecordedLog()
    scratch = Path(tempfile.mkdtemp(prefix="recbench-fit-"))
    try:
        sink = _Collected(scratch)
        fits.fit(spec, sink, progress=log)
        files = [
            (path.relative_to(scratch).as_posix(), path.read_bytes())
            for path in sorted(scratch.rglob("*"))
            if path.is_file()
        ]
        return FitOutcome(cells=sink.cells, files=files, log=log.lines)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def record_outcome(run_dir: RunDirectory, outcome: FitOutcome, progress: Progress) -> None:
    """Write a worker's ``outcome`` into ``run_dir`` (files first, each atomically; the
    latency records after the files they describe; the cells last) and print its log."""
    for message, style in outcome.log:
        progress.log(message, style=style)
    files = sorted(outcome.files, key=lambda entry: entry[0].startswith(latency.LATENCY_DIR))
    for relative, content in files:
        write_bytes_atomic(run_dir.path / relative, content)
    for name, record, per_query in outcome.cells:
        run_dir.write_cell(name, record, per_query)
