"""One trial: fit a model with the trial's options on the tuning users and score it on
the validation users.

The tuning data is built without the test users (:func:`tuning_split`): the run's split
is made with the run's options and seed, only its non-test users are kept, and the
validation users are a seeded sample of those. The test users are never handed to a
model nor evaluated. Validation uses the protocol being tuned for (every epoch, for
early stopping and pruning, and once at the end for the trial's value).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
import torch

from recbench.config.options import as_dict
from recbench.config.run_config import EvaluationOptions
from recbench.contracts import FitContext
from recbench.data.interactions import Sequences
from recbench.data.prepare import PreparedData
from recbench.data.protocols import Queries, build_queries
from recbench.data.splits import SplitOptions, make_split
from recbench.errors import ConfigError
from recbench.progress import Progress
from recbench.registry import PluginInfo, Registry
from recbench.runner.seeding import seed_everything
from recbench.tasks.ranking.evaluation import evaluate
from recbench.tasks.ranking.task import exclude_seen, reads_history
from recbench.tuning.budget import CONFIGURED, INTERRUPTED
from recbench.tuning.space import suggest

#: Validation users by default: a fifth of the non-test users (at least 200 where there
#: are enough: ~94 users made early stopping noisy).
DEFAULT_VALIDATION_USERS = 0.2
MIN_VALIDATION_USERS = 200


@dataclass(frozen=True)
class TuningData:
    """What trials train and validate on: the tuning users' sequences and the
    validation users' queries under the tuned protocol."""

    train: Sequences
    valid: Sequences
    queries: Queries
    item_counts: np.ndarray


def validation_user_count(value: float, n_users: int) -> int:
    """Validation users out of ``n_users``: a fraction below 1 (at least
    :data:`MIN_VALIDATION_USERS` where half the users allow it), or a count."""
    if value >= 1:
        count = int(value)
    else:
        count = max(round(value * n_users), min(MIN_VALIDATION_USERS, n_users // 2))
    if not 1 <= count < n_users:
        raise ConfigError(
            f"{count} validation users out of {n_users} tuning users leave no user to "
            "validate or to train on",
            where="--validation-users",
            hint="use a fraction such as 0.2 or a smaller count",
        )
    return count


def tuning_split(
    sequences: Sequences,
    split: SplitOptions,
    seed: int,
    validation_users: float,
    protocol: str,
) -> TuningData:
    """The tuning data of ``seed``: the run's split without its test users, whose
    validation users are a seeded sample of the rest (see the module docstring)."""
    without_validation = replace(split, valid=0, valid_days=0.0)
    pool = make_split(sequences, without_validation, seed).train
    n_valid = validation_user_count(validation_users, len(pool))
    order = np.random.default_rng([seed, 1]).permutation(len(pool))
    train = pool.select(np.sort(order[n_valid:]))
    valid = pool.select(np.sort(order[:n_valid]))
    queries = build_queries(protocol, valid)
    if not len(queries):
        raise ConfigError(
            f"the validation users give no {protocol} query",
            where="--validation-users",
            hint="use more validation users",
        )
    return TuningData(train=train, valid=valid, queries=queries, item_counts=train.item_counts())


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a model's study shares."""

    model: PluginInfo
    fixed: Mapping[str, Any]
    data: TuningData
    prepared: PreparedData
    evaluation: EvaluationOptions
    metric: str
    metrics: Mapping[str, Any]
    seed: int
    device: torch.device
    registry: Registry


def objective(setup: TrialSetup, parse: Callable[[dict[str, Any]], Any]) -> Any:
    """The Optuna objective of ``setup``'s model: ``parse`` turns option values into the
    model's ``Options`` (raising for an invalid combination)."""
    metric_id, _, k = setup.metric.partition("@")
    exclude = exclude_seen(setup.evaluation, setup.prepared)

    def score(model: Any) -> float:
        result = evaluate(
            model,
            setup.data.queries,
            {metric_id: setup.metrics[metric_id]},
            cutoffs=(int(k),),
            item_counts=setup.data.item_counts,
            device=setup.device,
            exclude_seen=exclude,
            ties=setup.evaluation.ties,
            progress=Progress.silent(),
            batch_size=setup.evaluation.batch_size or None,
            one_pass=reads_history(setup.evaluation, setup.model),
        )
        return float(result.summaries[setup.metric].mean)

    def run_trial(trial: optuna.Trial) -> float:
        fixed = parse(dict(setup.fixed))
        typed = {name: getattr(fixed, name) for name in setup.fixed}
        configured = as_dict(fixed) if trial.user_attrs.get(CONFIGURED) else None
        sampled = suggest(setup.model.search_space or {}, trial, typed, configured)
        started = time.perf_counter()
        epochs = 0

        def validate(model: Any) -> float:
            nonlocal epochs
            value = score(model)
            epochs += 1
            trial.report(value, epochs)
            if trial.should_prune():
                trial.set_user_attr("epochs", epochs)
                raise optuna.TrialPruned(f"pruned after epoch {epochs}")
            return value

        try:
            options = parse({**setup.fixed, **sampled})
            seed_everything(setup.seed)
            model = setup.model.cls(options)
            ctx = FitContext(
                n_items=setup.prepared.sequences.n_items,
                device=setup.device,
                seed=setup.seed,
                item_counts=setup.data.item_counts,
                validate=validate,
                validation_metric=setup.metric,
                registry=setup.registry,
            )
            model.fit(setup.data.train, setup.data.queries, ctx)
            value = score(model)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            # Optuna records it failed; a stopped trial must not count towards the budget.
            trial.set_user_attr(INTERRUPTED, True)
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            trial.set_user_attr("error", reason)
            raise
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("fit_seconds", time.perf_counter() - started)
        if not np.isfinite(value):
            trial.set_user_attr("error", f"the validation {setup.metric} is {value}")
            raise FloatingPointError(f"the validation {setup.metric} is {value}")
        return value

    return run_trial
