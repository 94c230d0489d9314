"""A search space sampled into an Optuna trial."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import optuna

from recbench.config.search_space import Choice, FloatRange, IntRange, SpaceEntry, is_active


def suggest(
    space: Mapping[str, SpaceEntry],
    trial: optuna.Trial,
    fixed: Mapping[str, Any],
    configured: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The option values of one trial: each active entry of ``space`` (in order; an
    entry whose ``when`` is not met is left out and keeps its configured value) that is
    not ``fixed`` (options given with ``-o``, typed; conditions read them too).

    ``configured`` (every option by name) makes this the trial of the configured options
    (queued with their values, :func:`configured_point`): an entry whose configured value
    the space cannot suggest keeps that value, unrecorded in the trial's parameters."""
    chosen: dict[str, Any] = dict(fixed)
    for name, entry in space.items():
        if name in fixed or not is_active(entry, chosen):
            continue
        if configured is not None and not takes(entry, configured[name]):
            chosen[name] = configured[name]
        elif isinstance(entry, Choice):
            chosen[name] = trial.suggest_categorical(name, list(entry.values))
        elif isinstance(entry, IntRange):
            chosen[name] = trial.suggest_int(
                name, entry.low, entry.high, step=entry.step, log=entry.log
            )
        elif isinstance(entry, FloatRange):
            chosen[name] = trial.suggest_float(name, entry.low, entry.high, log=entry.log)
    return {name: value for name, value in chosen.items() if name not in fixed}


def takes(entry: SpaceEntry, value: Any) -> bool:
    """Whether ``value`` is one of the values ``entry`` can suggest."""
    if isinstance(entry, Choice):
        return any(value == choice and type(value) is type(choice) for choice in entry.values)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(entry, IntRange):
        return (
            float(value).is_integer()
            and entry.low <= value <= entry.high
            and (int(value) - entry.low) % entry.step == 0
        )
    return entry.low <= value <= entry.high


def configured_point(
    space: Mapping[str, SpaceEntry], configured: Mapping[str, Any], fixed: Collection[str]
) -> dict[str, Any]:
    """The trial of the configured options -- the model's defaults and the ``fixed``
    options -- as Optuna parameters: each entry of ``space`` that is active under the
    configured values, not ``fixed`` (the names of the options given with ``-o``) and
    whose configured value the space can suggest, with that value (``configured``: every
    option by name). :func:`suggest` gives the configured trial the other values."""
    return {
        name: configured[name]
        for name, entry in space.items()
        if name not in fixed and is_active(entry, configured) and takes(entry, configured[name])
    }
