"""Checks a dataset as a run would use it, training nothing (``recbench check``).

:func:`check_dataset` plans the run of a configuration without models, prepares the
dataset (loading, preprocessing, cache), applies the task's checks of the data against the
configuration (such as cutoffs beyond the catalogue) and splits it for every seed, so that
every error a run would meet in these steps appears at once and every warning about the
data is collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from recbench.config.run_config import RunConfig
from recbench.config.settings import Settings
from recbench.data.prepare import PreparedData, prepare_dataset
from recbench.progress import Progress
from recbench.registry import Registry
from recbench.runner.execute import plan_run
from recbench.tasks.base import TaskRun


@dataclass(frozen=True)
class SeedSplit:
    """What the split of one seed holds: ``training`` in words (``"1,234 users"``) and
    the task's record of the split (the ``split`` entry of its cells, and the ranking
    policies)."""

    seed: int
    training: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class DataCheck:
    """The prepared dataset, its task, and the split of every seed."""

    data: PreparedData
    task: str
    splits: tuple[SeedSplit, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.data.warnings


def check_dataset(
    config: RunConfig, *, registry: Registry, settings: Settings, progress: Progress
) -> DataCheck:
    """Prepare and split the dataset of ``config`` (its models are ignored).

    Raises
    ------
    ConfigError
        Unknown names or options, or a configuration the data cannot serve.
    DataError
        Missing or malformed data.
    """
    plan = plan_run(config, registry)
    data = prepare_dataset(
        config.dataset, plan.dataset_options, plan.preprocess, registry, settings, progress
    )
    plan.task.check_data(plan, data)
    run = TaskRun(
        plan=plan,
        data=data,
        device=torch.device("cpu"),
        metrics={},
        progress=progress,
        registry=registry,
    )
    splits = []
    for seed in config.seeds:
        split = plan.task.split(run, seed)
        splits.append(
            SeedSplit(
                seed=seed,
                training=plan.task.training_size(split),
                fields=plan.task.cell_fields(run, split),
            )
        )
    return DataCheck(data=data, task=plan.task.name, splits=tuple(splits))
