"""A search space sampled into an Optuna trial."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from recbench.config.search_space import Choice, FloatRange, IntRange, SpaceEntry, is_active


def suggest(
    space: Mapping[str, SpaceEntry], trial: optuna.Trial, fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """The option values of one trial: each active entry of ``space`` (in order; an
    entry whose ``when`` is not met is left out and keeps its configured value) that is
    not ``fixed`` (options given with ``-o``, typed; conditions read them too)."""
    chosen: dict[str, Any] = dict(fixed)
    for name, entry in space.items():
        if name in fixed or not is_active(entry, chosen):
            continue
        if isinstance(entry, Choice):
            chosen[name] = trial.suggest_categorical(name, list(entry.values))
        elif isinstance(entry, IntRange):
            chosen[name] = trial.suggest_int(
                name, entry.low, entry.high, step=entry.step, log=entry.log
            )
        elif isinstance(entry, FloatRange):
            chosen[name] = trial.suggest_float(name, entry.low, entry.high, log=entry.log)
    return {name: value for name, value in chosen.items() if name not in fixed}
