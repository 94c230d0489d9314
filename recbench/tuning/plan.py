"""A tune's request and its checked plan: every name, option and number of ``recbench
tune`` is checked here before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from recbench.config.run_config import RunConfig
from recbench.data.protocols import PROTOCOLS, canonical_protocol
from recbench.errors import ConfigError, close_matches
from recbench.registry import PluginInfo, Registry
from recbench.runner.execute import plan_run
from recbench.tasks.base import RunPlan
from recbench.tuning.budget import Budget
from recbench.tuning.objective import DEFAULT_VALIDATION_USERS


@dataclass(frozen=True)
class TuneRequest:
    """What ``recbench tune`` was asked (see :func:`recbench.api.tune`)."""

    models: tuple[str, ...]
    dataset: str
    budget: Budget
    out: Path
    metric: str = "mrr@20"
    protocol: str = "iterative"
    jobs: int = 1
    seed: int = 0
    validation_users: float = DEFAULT_VALIDATION_USERS
    storage: str | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defaults_only: tuple[str, ...] = ()
    pruning: bool = True
    device: str = "cpu"


@dataclass(frozen=True)
class TunePlan:
    """A checked request: its run plan (names and options), protocol and the models."""

    request: TuneRequest
    run: RunPlan
    protocol: str
    models: tuple[PluginInfo, ...]

    @property
    def split_seed(self) -> int:
        """The seed of the split the tune draws its users from: the run's ``split.seed``
        when set, else the tune's ``--seed``. Its test users never reach a trial; a tuned
        run that splits with the same seed tests exactly them."""
        fixed = self.run.task_options.split.seed
        return self.request.seed if fixed is None else fixed


def plan_tune(request: TuneRequest, registry: Registry) -> TunePlan:
    """Check every name, option and number of ``request``; raise on the first error."""
    if not request.models:
        raise ConfigError("no model given", where="--models", hint="e.g. --models pop,lstm")
    if request.jobs < 1:
        raise ConfigError("--jobs must be at least 1", where="--jobs", hint="e.g. --jobs 2")
    protocol = canonical_protocol(request.protocol)
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"tuning serves the ranking protocols, not '{request.protocol}'",
            where="--protocol",
            hint=f"use one of {', '.join(PROTOCOLS)}",
        )
    metric_id, _, k = request.metric.partition("@")
    metric = registry.get("metric", metric_id)
    if metric.task != "ranking" or not k.isdigit() or int(k) < 1:
        raise ConfigError(
            f"cannot tune for '{request.metric}'",
            where="--metric",
            hint="name a ranking metric with its cutoff, e.g. mrr@20 or ndcg@10",
        )
    # A model named in --defaults-only runs once with its defaults, space or not.
    models = tuple(
        replace(info, search_space=None) if info.id in request.defaults_only else info
        for info in (registry.get("model", name) for name in request.models)
    )
    for info in models:
        if info.search_space is None and info.id not in request.defaults_only:
            raise ConfigError(
                f"model '{info.id}' declares no search space",
                where="--models",
                hint=f"tune it with its defaults only (one trial) with --defaults-only "
                f"{info.id}, or declare search_space on the class (docs/plugins.md)",
            )
        if info.task != "ranking":
            raise ConfigError(
                f"model '{info.id}' is a {info.task} model; tuning serves ranking models",
                where="--models",
            )
    unknown = [m for m in request.defaults_only if m not in {i.id for i in models}]
    if unknown:
        raise ConfigError(
            f"--defaults-only names '{unknown[0]}', which is not tuned",
            where="--defaults-only",
            hint=close_matches(unknown[0], [i.id for i in models]),
        )
    config = RunConfig(
        models=tuple(i.id for i in models),
        dataset=request.dataset,
        protocols=(protocol,),
        metrics=(metric_id,),
        cutoffs=(int(k),),
        options={s: dict(v) for s, v in request.options.items()},
        device=request.device,
        order_check="off",
    )
    run = plan_run(config, registry)
    swept = [m.label for m in run.models if m.label != m.info.id]
    if swept:
        raise ConfigError(
            f"an option sweep ({swept[0]}) cannot be tuned",
            where="-o",
            hint="give each fixed option one value; tuning chooses the others",
        )
    return TunePlan(request=request, run=run, protocol=protocol, models=models)
