"""The tasks recbench runs, and the task of a run.

A run's task follows from its protocols (:func:`task_for`, which also checks that every
model and metric of the run serves it); a stored run names its task in ``config.json``
(:func:`stored_task`; ranking runs written before it did have no ``task`` key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recbench.config.run_config import RunConfig
from recbench.data.protocols import canonical_protocol
from recbench.errors import ConfigError, DataError
from recbench.registry import Registry
from recbench.tasks.base import Task
from recbench.tasks.ranking.task import RankingTask
from recbench.tasks.rating.task import RatingTask

#: Every task, the default (ranking) first.
TASKS: tuple[Task, ...] = (RankingTask(), RatingTask())


def task_named(name: str) -> Task:
    """The task called ``name``."""
    for task in TASKS:
        if task.name == name:
            return task
    raise KeyError(name)


def task_of_protocol(protocol: str) -> Task:
    """The task a canonical protocol name belongs to."""
    return next(task for task in TASKS if protocol in task.protocols)


def task_for(config: RunConfig, registry: Registry) -> Task:
    """The task of the run's protocols, after checking that its protocols, models and
    metrics all serve it.

    Raises
    ------
    ConfigError
        Unknown names, protocols of two tasks, or a model or metric of another task.
    """
    protocols = list(dict.fromkeys(canonical_protocol(p) for p in config.protocols))
    by_task: dict[Task, list[str]] = {}
    for protocol in protocols:
        by_task.setdefault(task_of_protocol(protocol), []).append(protocol)
    if len(by_task) > 1:
        first, *_, last = sorted(by_task, key=TASKS.index)
        raise ConfigError(
            f"{last.describe(by_task[last])} cannot be mixed with {first.name} protocols "
            f"({', '.join(by_task[first])})",
            where="--protocols",
            hint=f"run --protocols {','.join(by_task[last])} on its own, and the "
            f"{first.name} protocols in another run",
        )
    (task,) = by_task
    what = task.describe(protocols)
    for kind, names, flag in (
        ("model", config.models, "--models"),
        ("metric", config.metrics, "--metrics"),
    ):
        for name in names:
            info = registry.get(kind, name)
            if info.task == task.name:
                continue
            owner = task_named(str(info.task))
            does = owner.model_does if kind == "model" else owner.metric_does
            fitting = sorted(i.id for i in registry.all(kind) if i.task == task.name)
            hint = task.misfit_hint(kind, info.id, owner, fitting)
            if kind == "metric":
                hint += ", or leave --metrics out to get every metric of the task"
            raise ConfigError(
                f"{kind} '{info.id}' {does} and cannot run under {what}", where=flag, hint=hint
            )
    return task


def stored_task(config: Mapping[str, Any]) -> Task:
    """The task of a stored run (``config.json``'s ``config``).

    Raises
    ------
    DataError
        When the run names a task this recbench does not know.
    """
    name = str(config.get("task", "ranking"))
    try:
        return task_named(name)
    except KeyError:
        raise DataError(
            f"the run is of task '{name}', which this recbench does not know",
            hint=f"use a recbench that runs it (this one runs {', '.join(t.name for t in TASKS)})",
        ) from None
