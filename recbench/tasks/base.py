"""A task: what a benchmark run does differently for ranking items and predicting ratings.

The runner (:mod:`recbench.runner.execute`) owns the one loop of every run -- seeds ×
models × protocols, resume, failure cells, export, progress -- and asks the run's
:class:`Task` for everything that differs:

- its option sections, planned and checked before any work starts
  (:meth:`Task.plan_options`), their entries in the resolved configuration and in the
  cells' keys (:meth:`Task.resolved_options`, :meth:`Task.key_fields`);
- the folds of a seed (:meth:`Task.folds`: one split per seed, or k for a k-fold split),
  the split of a seed's fold, with whatever the task evaluates on (:meth:`Task.split`),
  and any extra fits on the first seed (:meth:`Task.ablations`, the ranking task's order
  check);
- fitting a model, with the task's fit context and validation hook (:meth:`Task.fit`);
- evaluating it under one protocol (:meth:`Task.evaluate`, an :class:`Evaluation`);
- the fields every cell of the task records (:meth:`Task.cell_fields`).

The tasks are :mod:`recbench.tasks.ranking.task` and :mod:`recbench.tasks.rating.task`;
:mod:`recbench.tasks.catalog` picks a run's task. A task's report sections live in
:mod:`recbench.report` (the report reads run files only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recbench.config.options import as_dict
from recbench.config.run_config import RunConfig
from recbench.data.prepare import PreparedData
from recbench.data.preprocess import PreprocessOptions
from recbench.errors import ConfigError
from recbench.progress import Progress
from recbench.registry import Registry
from recbench.serve.export import ExportOptions
from recbench.stats.summary import MetricSummary
from recbench.tasks.plans import MetricPlan, ModelPlan


@dataclass(frozen=True)
class RunPlan:
    """A run's configuration with every name looked up and every option parsed.

    ``task_options`` are the task's own options (:meth:`Task.plan_options`).
    """

    config: RunConfig
    task: Task
    models: tuple[ModelPlan, ...]
    metrics: tuple[MetricPlan, ...]
    protocols: tuple[str, ...]
    dataset_options: Mapping[str, Any]
    preprocess: PreprocessOptions
    export: ExportOptions
    task_options: Any

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration, as stored with the results."""
        return {
            "task": self.task.name,
            "models": {m.label: m.resolved() for m in self.models},
            # what the report compares each model's options with
            "model_defaults": {m.info.id: m.default_options() for m in self.models},
            "dataset": {"name": self.config.dataset, "options": dict(self.dataset_options)},
            "protocols": list(self.protocols),
            "seeds": list(self.config.seeds),
            "metrics": {m.info.id: self.task.metric_entry(m) for m in self.metrics},
            # Only the ranking task reads cutoffs; stored by every task so that the
            # configuration reads back as a RunConfig (recbench.api.stored_run_config).
            "cutoffs": list(self.config.cutoffs),
            "preprocess": as_dict(self.preprocess),
            "export": as_dict(self.export),
            "device": self.config.device,
            # the stored JSON sorts its keys: these keep the order the run was given in
            "model_order": [m.label for m in self.models],
            "metric_order": [m.info.id for m in self.metrics],
            # how the report shows each metric (what the metric declares)
            "metric_display": {
                m.info.id: {"headline": m.info.headline, "count": m.info.count}
                for m in self.metrics
            },
            **self.task.resolved_options(self.task_options),
        }


@dataclass(frozen=True)
class TaskRun:
    """What the steps of a task share during a run: its plan, the prepared data, the
    device, the metrics (instances, by id), progress and the plugin registry."""

    plan: RunPlan
    data: PreparedData
    device: torch.device
    metrics: Mapping[str, Any]
    progress: Progress
    registry: Registry


@dataclass(frozen=True)
class Job:
    """A model to fit on a seed's split and evaluate under the run's protocols.

    ``split`` is what :meth:`Task.split` gave for the seed (an ablation's may be
    changed); ``ablation`` names an ablation (its cells are labelled
    ``"<label> (<ablation>)"``); ``reads`` wraps the trained model for every evaluation,
    validation included.
    """

    model: ModelPlan
    split: Any
    ablation: str | None = None
    reads: Callable[[Any], Any] | None = None

    @property
    def label(self) -> str:
        """The ``model_label`` of the job's cells."""
        return self.model.label + (f" ({self.ablation})" if self.ablation else "")

    def as_evaluated(self, model: Any) -> Any:
        """``model`` as every evaluation reads it."""
        return self.reads(model) if self.reads is not None else model


@dataclass(frozen=True)
class Evaluation:
    """A trained model's results under one protocol, as its cell records them.

    ``metrics`` maps a metric name to its cell entry (``mean``, ``ci95``, ``n``,
    ``per_query`` and what else the task records); ``per_query`` holds the per-query (or
    per-event) arrays kept beside the cell; ``headline`` is a line the runner logs after
    the evaluation (empty: none).
    """

    n_queries: int
    n_users: int
    metrics: Mapping[str, Mapping[str, Any]]
    per_query: Mapping[str, np.ndarray]
    seconds: float
    queries_per_second: float
    headline: str = ""


def metric_entry(summary: MetricSummary, *, per_query: bool) -> dict[str, Any]:
    """A metric's cell entry as every task records it: ``mean``, ``ci95``, ``n`` and
    whether its per-query values are kept beside the cell."""
    return {"mean": summary.mean, "ci95": summary.ci95, "n": summary.n, "per_query": per_query}


class Task(ABC):
    """What a benchmark run does differently for one task (see the module docstring)."""

    #: The task's name: the ``task`` of its model and metric plugins.
    name: ClassVar[str]
    #: Its protocols (canonical names): a run's protocols all belong to one task.
    protocols: ClassVar[tuple[str, ...]]
    #: Its option sections (``-o SECTION.KEY=VALUE``), beside ``preprocess``, ``export``
    #: and the sections of the run's plugins.
    sections: ClassVar[tuple[str, ...]]
    #: How to set its options, when options of another task's section are given.
    sections_hint: ClassVar[str]
    #: What a model and a metric of the task do, in words.
    model_does: ClassVar[str]
    metric_does: ClassVar[str]
    #: Preprocessing defaults of its runs (``-o preprocess.*`` still applies).
    preprocess_defaults: ClassVar[Mapping[str, Any]] = {}
    #: Why its trained models are not exported and timed; empty: they are.
    no_export: ClassVar[str] = ""

    # -- planning ----------------------------------------------------------------------

    def describe(self, protocols: Sequence[str]) -> str:
        """The run's protocols in words: ``the ranking protocols half-split, iterative``."""
        plural = "s" if len(protocols) > 1 else ""
        return f"the {self.name} protocol{plural} {', '.join(protocols)}"

    def misfit_hint(self, kind: str, plugin_id: str, owner: Task, fitting: Sequence[str]) -> str:
        """The hint of the error for a ``kind`` plugin of task ``owner`` in a run of this
        task; ``fitting`` are the ids of this task's plugins of that kind."""
        return (
            f"run '{plugin_id}' with --protocols {','.join(owner.protocols)}, in a run of its own"
        )

    def refuse_sections(
        self, options: Mapping[str, Any], protocols: Sequence[str], others: Sequence[Task]
    ) -> None:
        """Refuse options of another task's section, with this task's hint."""
        for other in others:
            for section in other.sections:
                if section in options and section not in self.sections:
                    raise ConfigError(
                        f"options of section '{section}' do not apply to "
                        f"{self.describe(protocols)}",
                        where=f"-o {section}.*",
                        hint=self.sections_hint,
                    )

    @abstractmethod
    def plan_options(
        self,
        config: RunConfig,
        registry: Registry,
        models: Sequence[ModelPlan],
        metrics: Sequence[MetricPlan],
    ) -> Any:
        """The task's options parsed from ``config`` (raise on the first error)."""

    @abstractmethod
    def resolved_options(self, options: Any) -> dict[str, Any]:
        """The task's entries of the resolved configuration (``config.json``)."""

    def metric_entry(self, metric: MetricPlan) -> dict[str, Any]:
        """A metric's entry of the resolved configuration (``metrics[id]``)."""
        return metric.resolved()

    @abstractmethod
    def key_fields(self, resolved: Mapping[str, Any], ablation: str | None) -> dict[str, Any]:
        """What enters a cell's key beside the model, dataset, metrics, protocol and seed:
        the task's entries of the ``resolved`` configuration (and the ablation's)."""

    # -- running -----------------------------------------------------------------------

    def check_data(self, plan: RunPlan, data: PreparedData) -> None:  # noqa: B027 (optional)
        """Raise when the prepared data cannot serve the task as ``plan`` asks."""

    def dataset_fields(self, plan: RunPlan, data: PreparedData) -> dict[str, Any]:
        """Fields the task adds to ``dataset.json``."""
        return {}

    def folds(self, run: TaskRun) -> tuple[int | None, ...]:
        """The folds each seed is split into: ``(None,)`` (one split per seed) unless the
        task's split is a k-fold one, then ``(0, ..., k - 1)``."""
        return (None,)

    @abstractmethod
    def split(self, run: TaskRun, seed: int, fold: int | None = None) -> Any:
        """The split of ``seed`` (of its fold ``fold``, one of :meth:`folds`), with what
        the task evaluates on."""

    def ablations(self, run: TaskRun, split: Any, seed: int) -> list[Job]:
        """Extra fits on the first seed's ``split`` (none by default)."""
        return []

    @abstractmethod
    def cell_fields(self, run: TaskRun, split: Any) -> dict[str, Any]:
        """What every cell of a model fitted on ``split`` records about the task."""

    def model_fields(self, model: Any) -> dict[str, Any]:
        """What a cell records about the built (not yet fitted) ``model``."""
        return {}

    @abstractmethod
    def training_size(self, split: Any) -> str:
        """The size of the training data in words, for the progress log."""

    @abstractmethod
    def fit(self, run: TaskRun, job: Job, model: Any, checkpoint_dir: Path) -> None:
        """Fit ``model`` on ``job.split`` with the task's fit context."""

    @abstractmethod
    def evaluate(
        self, run: TaskRun, job: Job, model: Any, protocol: str, description: str
    ) -> Evaluation:
        """Evaluate the fitted ``model`` under ``protocol`` on ``job.split``'s test part."""

    def export_queries(self, split: Any, protocol: str) -> Any:
        """The test queries whose inputs the ``score()`` latency reads (exporting tasks)."""
        raise NotImplementedError(f"the {self.name} task exports no model")
