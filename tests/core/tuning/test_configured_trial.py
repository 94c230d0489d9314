"""A new study's first trial runs the configured options (defaults and fixed options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recbench.cli import main
from recbench.config.search_space import Choice, FloatRange, IntRange
from recbench.tuning.space import configured_point, takes

DATA = "synthetic:tiny"


def _study(out: Path, model: str) -> Any:
    import optuna

    from recbench.tuning.study import open_storage, storage_url

    return optuna.load_study(study_name=model, storage=open_storage(storage_url(out, None)))


def _tune(out: Path, *args: str) -> int:
    return main(["tune", "--dataset", DATA, "--out", str(out), "--quiet", *args])


@pytest.mark.parametrize(
    ("entry", "value", "expected"),
    [
        (Choice((0, 5, 20)), 20, True),
        (Choice((0, 5, 20)), 7, False),
        (Choice((True, False)), 1, False),  # 1 == True, but not a value the space suggests
        (IntRange(1, 20), 20, True),
        (IntRange(1, 20), 21, False),
        (IntRange(8, 512, step=8), 64, True),
        (IntRange(8, 512, step=8), 60, False),
        (IntRange(1, 20), True, False),
        (FloatRange(1e-4, 1e-1, log=True), 1e-3, True),
        (FloatRange(1e-4, 1e-1, log=True), 0.5, False),
        (FloatRange(0.0, 0.5), "0.1", False),
    ],
)
def test_takes_is_whether_a_space_entry_can_suggest_a_value(entry, value, expected):
    assert takes(entry, value) is expected


def test_the_configured_point_follows_conditions_and_skips_fixed_options():
    space = {
        "loss": Choice(("bpr", "softmax")),
        "negatives": IntRange(8, 512, log=True, when={"loss": ("bpr",)}),
        "lr": FloatRange(1e-4, 1e-1, log=True),
        "dim": IntRange(16, 256),
    }
    configured = {"loss": "softmax", "negatives": 16, "lr": 5.0, "dim": 64}
    params = configured_point(space, configured, fixed=["dim"])
    # negatives is inactive under softmax, dim is fixed; lr lies outside its range.
    assert params == {"loss": "softmax"}
    params = configured_point(space, {**configured, "loss": "bpr", "lr": 1e-2}, ())
    assert params == {"loss": "bpr", "negatives": 16, "lr": 1e-2, "dim": 64}


def test_a_new_study_starts_from_the_configured_options_and_only_once(tmp_path) -> None:
    out = tmp_path / "study"
    assert _tune(out, "--models", "markov,sr", "--trials", "3", "-o", "sr.steps=5") == 0
    markov = _study(out, "markov")
    first = markov.trials[0]
    assert first.user_attrs.get("configured") is True
    assert first.params == {"pruning": 20}  # markov's default
    assert [t.user_attrs.get("configured", False) for t in markov.trials] == [True, False, False]
    sr = _study(out, "sr").trials[0]
    assert sr.user_attrs.get("configured") is True and "steps" not in sr.params
    assert markov.best_value >= first.value  # a tune never ends below its start
    report = (out / "report.md").read_text()
    assert "| model | completed | pruned | failed | trial time | wall time | configured" in report
    assert f"| {first.value:.4f} |" in report
    # Continued with a larger budget: no second configured trial.
    assert _tune(out, "--models", "markov,sr", "--trials", "4", "-o", "sr.steps=5") == 0
    trials = _study(out, "markov").trials
    assert len(trials) == 4 and sum(bool(t.user_attrs.get("configured")) for t in trials) == 1


def test_configured_values_outside_the_space_still_run_as_configured(tmp_path, monkeypatch):
    """markov's default pruning=20 is not one of this space's choices: the first trial
    runs it all the same (unrecorded in the trial's parameters, so the tuned options
    leave it at its default), and the later trials sample the space."""
    from recbench_baselines.markov import Markov

    monkeypatch.setattr(Markov, "search_space", {"pruning": Choice((0, 5, 10))})
    fit, fitted = Markov.fit, []

    def spy_fit(self, train, valid, ctx):
        fitted.append(self.options.pruning)
        return fit(self, train, valid, ctx)

    monkeypatch.setattr(Markov, "fit", spy_fit)
    out = tmp_path / "study"
    assert _tune(out, "--models", "markov", "--trials", "3") == 0
    trials = _study(out, "markov").trials
    assert trials[0].user_attrs.get("configured") is True and trials[0].params == {}
    assert fitted[0] == 20 and all(value in (0, 5, 10) for value in fitted[1:])
    assert [t.params["pruning"] for t in trials[1:]] == fitted[1:]
