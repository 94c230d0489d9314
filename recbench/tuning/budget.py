"""The tuning budget: the same number of trials, or the same trial time, per model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from recbench.errors import ConfigError

if TYPE_CHECKING:
    from recbench.registry import PluginInfo

#: A trial that a killed tune left running, marked failed when the study is resumed:
#: it does not count towards the budget.
INTERRUPTED = "interrupted"
#: The first trial of a study, which runs the configured options (the model's defaults and
#: the options fixed with ``-o``), also those its search space cannot suggest.
CONFIGURED = "configured"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Budget:
    """``trials`` finished trials (completed, pruned or failed) per model, or
    ``seconds`` of trial time per model (summed over the trials, so over all workers)."""

    trials: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.trials is None) == (self.seconds is None):
            raise ConfigError(
                "give one budget: a number of trials or a time",
                where="recbench tune",
                hint="pass --trials 30 or --budget 30m",
            )
        if self.trials is not None and self.trials < 1:
            raise ConfigError(
                f"--trials must be at least 1, got {self.trials}",
                where="--trials",
                hint="pass --trials 30 (trials per model)",
            )
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(
                "the budget must be a positive time", where="--budget", hint="e.g. --budget 30m"
            )

    def describe(self) -> str:
        if self.trials is not None:
            return f"{self.trials} trial{'' if self.trials == 1 else 's'} per model"
        return f"{format_seconds(self.seconds or 0.0)} of trial time per model"

    def as_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "seconds": self.seconds}

    def shortfall(self, trials: list[Any]) -> str | None:
        """How much of the budget the finished ``trials`` used (``"3 of 15 trials"``),
        or ``None`` when they spent it."""
        if self.trials is not None:
            if len(trials) >= self.trials:
                return None
            return f"{len(trials)} of {self.trials} trials"
        used, seconds = trial_seconds(trials), self.seconds or 0.0
        if used >= seconds:
            return None
        return f"{format_seconds(used)} of {format_seconds(seconds)} of trial time"

    def spent(self, study: optuna.Study, *, running: bool = True) -> bool:
        """Whether ``study`` has had its budget (``running``: count the trials still
        running as spent, so that parallel workers do not overshoot a trial count)."""
        trials = counted_trials(study, running=running)
        if self.trials is not None:
            return len(trials) >= self.trials
        return trial_seconds(trials) >= (self.seconds or 0.0)


def model_budget(budget: Budget, info: PluginInfo) -> Budget:
    """A model's budget: ``budget``, or one trial for a model with an empty search space
    (every trial would be the same configuration)."""
    return budget if info.search_space else Budget(trials=1)


def unfinished(study: optuna.Study | None, budget: Budget) -> str | None:
    """What ``study`` used of its budget when it did not spend it, else ``None``
    (``budget``: the model's, for a study that recorded none or that no tune started,
    ``None``)."""
    if study is None:
        return budget.shortfall([])
    stored = study.user_attrs.get("budget")
    return (Budget(**stored) if stored else budget).shortfall(counted_trials(study))


def counted_trials(study: optuna.Study, *, running: bool = False) -> list[Any]:
    """The trials that count towards the budget: finished ones (and running ones when
    ``running``), not those a killed tune left behind."""
    states = (*_FINISHED, TrialState.RUNNING) if running else _FINISHED
    return [
        t
        for t in study.get_trials(deepcopy=False, states=states)
        if not t.user_attrs.get(INTERRUPTED)
    ]


def trial_seconds(trials: list[Any]) -> float:
    """The summed wall time of ``trials`` (finished ones only)."""
    return sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete is not None and t.datetime_start is not None
    )


def parse_budget(text: str) -> float:
    """Seconds of a time budget such as ``90s``, ``30m``, ``2h`` or ``1h30m`` (a bare
    number is minutes).

    Raises
    ------
    ConfigError
        When ``text`` is not such a time.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        cleaned += "m"
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ConfigError(
            f"cannot read the budget '{text}'",
            where="--budget",
            hint="write a time such as 90s, 30m, 2h or 1h30m",
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ConfigError(
            f"the budget '{text}' is no time", where="--budget", hint="e.g. --budget 30m"
        )
    return seconds


def format_seconds(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``3600`` -> ``1h0m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
