"""The rating track's core (recbench.tasks.rating.evaluation): split, scaling, histories, metrics, the run,
its report, and the one-line errors of runs that mix tasks."""

from __future__ import annotations

import json
import math
import types
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import recbench
from recbench import cli, hookimpl
from recbench.data.batches import RatingBatch
from recbench.data.interactions import Sequences
from recbench.data.ratings import RatingOptions, RatingScale, split_ratings
from recbench.errors import ConfigError, PluginError
from recbench.registry import discover, validate_class
from recbench.results import SCHEMA_VERSION, RunDirectory
from recbench.tasks.rating.evaluation import (
    aggregate,
    evaluate_ratings,
    predict_events,
    rating_fit_context,
)

TINY = "synthetic:tiny"


def rated_sequences(n_users: int = 50, length: int = 20, seed: int = 0) -> Sequences:
    """``n_users`` users with ``length`` events each, ratings 1..5, increasing times."""
    rng = np.random.default_rng(seed)
    n = n_users * length
    return Sequences(
        offsets=np.arange(0, n + 1, length, dtype=np.int64),
        items=rng.integers(1, 31, n).astype(np.int32),
        users=np.arange(n_users, dtype=np.int64),
        n_items=30,
        timestamps=np.tile(np.arange(length, dtype=np.int64) * 60, n_users),
        ratings=np.concatenate([[1.0, 5.0], rng.integers(1, 6, n - 2)]).astype(np.float32),
    )


# -- split and scale ---------------------------------------------------------------------


def test_split_is_seeded_sized_and_disjoint():
    sequences = rated_sequences()
    split = split_ratings(sequences, RatingOptions(), seed=3)
    assert (len(split.train), len(split.valid), len(split.test)) == (720, 80, 200)
    sets = [set(part.events.tolist()) for part in (split.train, split.valid, split.test)]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2])
    assert sets[1].isdisjoint(sets[2])
    assert set().union(*sets) == set(range(sequences.n_events))
    again = split_ratings(sequences, RatingOptions(), seed=3)
    other = split_ratings(sequences, RatingOptions(), seed=4)
    for name in ("train", "valid", "test"):
        assert np.array_equal(getattr(split, name).events, getattr(again, name).events)
    assert not np.array_equal(split.test.events, other.test.events)
    no_valid = split_ratings(sequences, RatingOptions(test=0.5, valid=0.0), seed=3)
    assert (len(no_valid.train), len(no_valid.valid), len(no_valid.test)) == (500, 0, 500)
    assert rating_fit_context(no_valid).validate is None


def test_events_carry_their_user_item_rating_and_time():
    sequences = rated_sequences()
    split = split_ratings(sequences, RatingOptions(), seed=0)
    test = split.test
    user_of_event = np.repeat(np.arange(len(sequences)), sequences.lengths)
    assert np.array_equal(test.users, user_of_event[test.events])
    assert np.array_equal(test.items, sequences.items[test.events])
    assert np.array_equal(test.timestamps, sequences.timestamps[test.events])
    stars = split.scale.to_stars(test.ratings)
    assert np.allclose(stars, sequences.ratings[test.events])


@pytest.mark.parametrize(
    ("method", "per_unit", "unit_of_5", "unit_of_1"),
    [("min-max", 4.0, 1.0, 0.0), ("max", 5.0, 1.0, 0.2)],
)
def test_scale_round_trip(method, per_unit, unit_of_5, unit_of_1):
    stars = np.array([1.0, 2.0, 3.5, 5.0])
    scale = RatingScale.of(stars, method)
    assert (scale.low, scale.high, scale.stars_per_unit) == (1.0, 5.0, per_unit)
    unit = scale.to_unit(stars)
    assert unit[-1] == pytest.approx(unit_of_5) and unit[0] == pytest.approx(unit_of_1)
    assert np.allclose(scale.to_stars(unit), stars)
    # an error on the [0, 1] scale times stars_per_unit is the error in stars
    assert (unit[2] - unit[1]) * scale.stars_per_unit == pytest.approx(1.5)


def test_data_without_ratings_is_refused():
    sequences = Sequences.from_lists([[1, 2, 3], [2, 3]], 3)
    with pytest.raises(ConfigError, match="needs ratings"):
        split_ratings(sequences, RatingOptions(), 0)


# -- histories ---------------------------------------------------------------------------


def test_histories_hold_only_the_users_earlier_training_events():
    sequences = rated_sequences(n_users=5, length=30)
    split = split_ratings(sequences, RatingOptions(), seed=1)
    train_events = set(split.train.events.tolist())
    for events in (split.train, split.valid, split.test):
        index = np.arange(len(events))
        batch = events.batch(index, None, "cpu")
        for row in range(len(events)):
            event, user = int(events.events[row]), int(events.users[row])
            start = int(sequences.offsets[user])
            earlier = [e for e in range(start, event) if e in train_events]
            length = int(batch.history_lengths[row])
            assert length == len(earlier)
            width = batch.history_items.shape[1]
            items = batch.history_items[row, width - length :].tolist()
            ratings = batch.history_ratings[row, width - length :].numpy()
            assert items == sequences.items[earlier].tolist()
            assert np.allclose(split.scale.to_stars(ratings), sequences.ratings[earlier])
            assert not batch.history_items[row, : width - length].any()
    capped = split.test.batch(np.arange(len(split.test)), 3, "cpu")
    assert capped.history_items.shape[1] <= 3
    assert np.array_equal(capped.history_lengths.numpy(), np.minimum(split.test.history_lengths, 3))
    assert split.test.batch(np.arange(4), 0, "cpu").history_items.shape == (4, 0)


# -- metrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fixed:
    """A rating model that predicts given values, in event order."""

    values: np.ndarray
    id: ClassVar[str] = "fixed"

    def predict(self, batch: RatingBatch) -> torch.Tensor:
        return torch.as_tensor(self.values, dtype=torch.float32)[: len(batch.users)]


def rating_metrics() -> dict:
    registry = discover()
    return {m: registry.get("metric", m).cls() for m in ("rmse", "mae")}


def test_rmse_and_mae_by_hand_and_in_stars():
    sequences = Sequences(
        offsets=np.array([0, 5]),
        items=np.arange(1, 6, dtype=np.int32),
        users=np.array([0]),
        n_items=5,
        ratings=np.array([1.0, 5.0, 4.0, 2.0, 3.0], dtype=np.float32),
    )
    split = split_ratings(sequences, RatingOptions(test=0.6, valid=0.0), seed=0)
    test = split.test  # three events, ratings (r - 1) / 4
    actual = test.ratings.astype(np.float64)
    predicted = np.clip(actual + np.array([0.25, -0.5, 0.0]), 0.0, 1.0)
    errors = predicted - actual
    registry = discover()
    registrations = {m: registry.get("metric", m) for m in ("rmse", "mae")}
    result = evaluate_ratings(
        _Fixed(predicted),
        test,
        rating_metrics(),
        split.scale,
        registrations=registrations,
        device="cpu",
    )
    rmse = math.sqrt(np.mean(errors**2))
    mae = np.mean(np.abs(errors))
    assert result.summaries["rmse"].mean == pytest.approx(rmse)
    assert result.summaries["mae"].mean == pytest.approx(mae)
    assert result.summaries["rmse_stars"].mean == pytest.approx(4 * rmse)
    assert result.summaries["mae_stars"].mean == pytest.approx(4 * mae)
    assert np.allclose(result.per_event["rmse"], errors**2)
    assert np.allclose(result.per_event["mae"], np.abs(errors))
    assert result.aggregations == {"rmse": "root_mean", "mae": "mean"}


def test_hand_computed_values():
    metrics = rating_metrics()
    predicted = torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64)
    actual = torch.tensor([0.75, 0.25, 0.5], dtype=torch.float64)
    squared = metrics["rmse"](predicted, actual, None)
    absolute = metrics["mae"](predicted, actual, None)
    assert squared.tolist() == [0.0625, 0.0, 0.25]
    assert absolute.tolist() == [0.25, 0.0, 0.5]
    summary = aggregate(squared.numpy(), "root_mean")
    assert summary.mean == pytest.approx(math.sqrt(0.3125 / 3))
    mean_summary = aggregate(squared.numpy(), "mean")
    assert summary.ci95 == pytest.approx(mean_summary.ci95 / (2 * summary.mean))
    assert aggregate(absolute.numpy(), "mean").mean == pytest.approx(0.25)


def test_predictions_are_clipped_and_checked():
    split = split_ratings(rated_sequences(), RatingOptions(), seed=0)
    test = split.test.select(np.arange(3))
    clipped = predict_events(_Fixed(np.array([-1.0, 0.5, 2.0])), test, device="cpu")
    assert clipped.tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(PluginError, match="predict"):
        predict_events(_Fixed(np.array([np.nan, 0.5, 0.5])), test, device="cpu")
    with pytest.raises(PluginError, match=r"shape \[3\]"):
        predict_events(_Fixed(np.array([0.5])), test, device="cpu")


# -- contracts -----------------------------------------------------------------------------


def test_registry_validates_rating_models_and_metrics():
    from recbench_metrics.rating_metrics import RootMeanSquaredError
    from recbench_rating.mf import MatrixFactorization

    assert validate_class("model", MatrixFactorization).task == "rating"
    assert validate_class("metric", RootMeanSquaredError).task == "rating"

    class NoPredict:
        id = "nopredict"
        summary = "a rating model without predict"
        version = "1"
        task = "rating"

        @dataclass(frozen=True)
        class Options:
            pass

        def fit(self, train, valid, ctx): ...

        def score(self, batch): ...

    with pytest.raises(PluginError, match="missing method 'predict'"):
        validate_class("model", NoPredict)
    NoPredict.task = "regression"
    with pytest.raises(PluginError, match="'task' must be one of 'ranking', 'rating'"):
        validate_class("model", NoPredict)
    registry = discover()
    assert {i.id for i in registry.all("model") if i.task == "rating"} >= {
        "mean",
        "mf",
        "dense",
        "lstm_rating",
    }
    assert registry.get("model", "pop").task == "ranking"


# -- runs ----------------------------------------------------------------------------------


def test_rating_run_writes_cells_arrays_and_a_report(settings, tmp_path):
    result = recbench.run(
        models=["mean", "mf"],
        dataset=TINY,
        protocols=["rating"],
        options={"mf": {"epochs": 3}},
        out=tmp_path / "run",
        settings=settings,
    )
    run_dir = RunDirectory.open(result.path)
    cells = list(run_dir.cells())
    assert sorted(c["model_label"] for c in cells) == ["mean", "mf"]
    for cell in cells:
        assert cell["schema_version"] == SCHEMA_VERSION
        assert cell["status"] == "ok" and cell["protocol"] == "rating"
        assert set(cell["metrics"]) == {"rmse", "mae", "rmse_stars", "mae_stars"}
        arrays = run_dir.per_query(cell)
        assert arrays["rmse"].shape == (cell["n_queries"],)
        rmse = cell["metrics"]["rmse"]["mean"]
        assert rmse == pytest.approx(math.sqrt(arrays["rmse"].mean()))
        assert cell["metrics"]["rmse_stars"]["mean"] == pytest.approx(4 * rmse)
        assert cell["split"]["test_events"] == cell["n_queries"] == 1000
        assert {"fit_seconds", "eval_seconds"} <= set(cell["timing"])
    config = json.loads((result.path / "config.json").read_text())["config"]
    assert config["protocols"] == ["rating"] and config["preprocess"]["min_item_pop"] == 1
    assert set(config["metrics"]) == {"rmse", "mae"}
    report = (result.path / "report.md").read_text()
    for text in ("## Results: rating", "rmse (stars) ↓", "mae ↓", "(r − 1) / 4", "## Timing"):
        assert text in report
    results = report.split("## Results: rating")[1]
    mf_row = next(line for line in results.splitlines() if line.startswith("| mf "))
    assert "**" in mf_row  # mf beats the mean: the best of its columns
    assert "## Results: half-split" not in report
    (result.path / "report.md").unlink()
    assert cli.main(["report", str(result.path)]) == 0
    assert (result.path / "report.md").read_text() == report
    frame = result.to_dataframe()
    assert set(frame["metric"]) == {"rmse", "mae", "rmse_stars", "mae_stars"}


def test_rating_run_resumes_and_marks_failures(settings, tmp_path, monkeypatch):
    out = tmp_path / "run"
    recbench.run(models=["mean"], dataset=TINY, protocols=["rating"], out=out, settings=settings)
    from recbench_rating.mean import GlobalMean

    def broken(self, train, valid, ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(GlobalMean, "fit", broken)
    recbench.run(  # finished: skipped, so the broken fit is never called
        models=["mean"], dataset=TINY, protocols=["rating"], out=out, resume=True, settings=settings
    )
    assert [c["status"] for c in RunDirectory.open(out).cells()] == ["ok"]
    other = tmp_path / "failing"
    recbench.run(models=["mean"], dataset=TINY, protocols=["rating"], out=other, settings=settings)
    (cell,) = RunDirectory.open(other).cells()
    assert cell["status"] == "failed" and "boom" in cell["error"]
    assert "## Failures" in (other / "report.md").read_text()


class Pessimist:
    """A rating model that predicts the lowest rating for every event."""

    id = "pessimist"
    summary = "Predicts the lowest rating"
    version = "1"
    task: ClassVar[str] = "rating"
    max_history = 0

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        pass

    def fit(self, train, valid, ctx):
        pass

    def predict(self, batch: RatingBatch) -> torch.Tensor:
        return torch.zeros(batch.users.shape, dtype=torch.float32)


def test_the_rating_report_marks_significant_differences(settings, tmp_path):
    registry = discover()

    @hookimpl
    def register_models(register):
        register(Pessimist)

    registry.add_plugin(
        "pessimist", types.SimpleNamespace(register_models=register_models), "recbench-tests", "0"
    )
    result = recbench.run(
        models=["mean", "pessimist"],
        dataset=TINY,
        protocols=["rating"],
        seeds=[0, 1],
        out=tmp_path / "run",
        settings=settings,
        registry=registry,
    )
    report = (result.path / "report.md").read_text()
    table = report.split("## Results: rating")[1].split("## ")[0]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| model")
    }
    assert set(rows) == {"mean", "pessimist"}
    # far worse than the mean on every test event: against the best baseline (†) and the
    # best model (‡), in every column; the mean is both, so it is tested against neither
    assert all(cell.endswith("†‡") for cell in rows["pessimist"])
    assert not any(mark in cell for cell in rows["mean"] for mark in "†‡")
    # two seeds: the ± is over seeds, in every cell
    assert all(" ± " in cell for cell in rows["mean"] + rows["pessimist"])
    assert "pessimist is significantly worse (p < 0.001)" in report
    assert "Holm-corrected across the table" in report and "squared errors" in report
    assert "(mean), ‡ from the best model" in report  # the baselines are named


def test_ranking_runs_compute_no_rating_metric(settings, tmp_path):
    result = recbench.run(
        models=["pop"],
        dataset=TINY,
        protocols=["last-item"],
        overrides=["export.enabled=false"],
        out=tmp_path / "run",
        settings=settings,
    )
    metrics = set(result.to_dataframe()["metric"])
    assert "sps" in metrics and not metrics & {"rmse", "mae", "rmse_stars", "mae_stars"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--protocols", "rating,half-split", "--models", "mf"],
            "the rating protocol cannot be mixed with ranking protocols (half-split) "
            "(in --protocols)",
        ),
        (
            ["--protocols", "rating", "--models", "pop"],
            "model 'pop' ranks items and cannot run under the rating protocol (in --models)",
        ),
        (
            ["--models", "mf"],
            "model 'mf' predicts ratings and cannot run under the ranking protocols "
            "half-split, iterative (in --models): run 'mf' with --protocols rating",
        ),
        (
            ["--protocols", "rating", "--models", "mf", "--metrics", "sps"],
            "metric 'sps' measures rankings and cannot run under the rating protocol "
            "(in --metrics)",
        ),
        (
            ["--models", "pop", "--metrics", "rmse"],
            "metric 'rmse' measures rating errors and cannot run under the ranking protocols",
        ),
        (
            ["--protocols", "rating", "--models", "mf", "-o", "split.test=0.3"],
            "options of section 'split' do not apply to the rating protocol",
        ),
        (
            ["--protocols", "rating", "--models", "mf", "-o", "rating.tst=0.3"],
            "unknown option 'tst' for section 'rating'",
        ),
        (
            ["--protocols", "ratings", "--models", "mf"],
            "unknown protocol 'ratings': did you mean 'rating'?",
        ),
    ],
)
def test_mixing_tasks_is_a_one_line_error(env, tmp_path, capsys, args, message):
    code = cli.main(["run", "--dataset", TINY, "--out", str(tmp_path / "run"), "--quiet", *args])
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recbench: error: ")
    assert message in lines[0]
    assert not (tmp_path / "run").exists()


def test_cli_rating_run_prints_a_table_and_skips_export(env, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--protocols", "rating", "--models", "mean", "--dataset", TINY]
    assert cli.main([*args, "--out", str(out), "-o", "export.enabled=true"]) == 0
    captured = capsys.readouterr()
    assert "rating prediction" in captured.out and "rmse_stars" in captured.out
    assert "no one-step cell" in captured.err
    assert not (out / "latency").exists()
    assert cli.main(["export", str(out), "--quiet"]) == 0


def test_the_docs_describe_the_rating_contract():
    from pathlib import Path

    from recbench.contracts import TASK_REQUIRED_METHODS

    root = Path(__file__).resolve().parents[3]
    plugins = (root / "docs" / "plugins.md").read_text()
    for (kind, task), methods in TASK_REQUIRED_METHODS.items():
        assert f'task = "{task}"' in plugins, kind
        for method in methods:
            assert f"def {method}(self" in plugins
    for text in ("## Rating models", "## Rating metrics", "max_history", "aggregation = "):
        assert text in plugins
    methodology = (root / "docs" / "methodology.md").read_text()
    assert "## The rating track" in methodology and "(r − 1) / 4" in methodology
