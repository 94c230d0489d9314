"""The rating models of recbench_rating learn, are seeded, and read only earlier events."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recbench.config.options import parse_options
from recbench.data.ratings import RatingOptions, split_ratings
from recbench.registry import discover
from recbench.tasks.rating.evaluation import predict_events, rating_fit_context
from recbench.testing import tiny_data

#: A trained model's test RMSE must be at most this share of the global mean's. On the
#: tiny data (ratings from user and item biases plus noise) the trained models reach
#: about 0.87 of it; the margin leaves room for seeds and platforms.
LEARNING_MARGIN = 0.95
#: Epochs for the learning tests (early stopping usually ends them sooner).
EPOCHS = 5

REGISTRY = discover()


def make(model_id: str, **values):
    cls = REGISTRY.get("model", model_id).cls
    return cls(parse_options(cls.Options, values, owner=model_id))


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


@pytest.fixture(scope="module")
def split():
    return tiny_data().ratings


def test_mean_predicts_the_mean_training_rating(split):
    model = make("mean")
    model.fit(split.train, split.valid, rating_fit_context(split))
    predicted = predict_events(model, split.test, device="cpu")
    assert np.allclose(predicted, split.train.ratings.mean())


@pytest.mark.parametrize(
    ("model_id", "options"),
    [("mf", {}), ("dense", {}), ("lstm_rating", {}), ("lstm_rating", {"max_history": 3})],
)
def test_model_beats_the_global_mean(split, model_id, options):
    model = make(model_id, epochs=EPOCHS, **options)
    model.fit(split.train, split.valid, rating_fit_context(split))
    baseline = rmse(np.full(len(split.test), split.train.mean_rating), split.test.ratings)
    value = rmse(predict_events(model, split.test, device="cpu"), split.test.ratings)
    assert value < LEARNING_MARGIN * baseline, (model_id, value, baseline)


@pytest.mark.parametrize("model_id", ["mf", "lstm_rating"])
def test_training_is_seeded(split, model_id):
    predictions = []
    for _ in range(2):
        model = make(model_id, epochs=1)
        model.fit(split.train, split.valid, rating_fit_context(split))
        predictions.append(predict_events(model, split.test, device="cpu"))
    assert np.array_equal(predictions[0], predictions[1])


def test_training_keeps_the_lowest_validation_rmse_in_a_weights_only_checkpoint(split, tmp_path):
    import torch

    model = make("mf", epochs=6, patience=2, learning_rate=0.05, l2=0.0)  # overfits
    ctx = rating_fit_context(split, checkpoint_dir=tmp_path)
    model.fit(split.train, split.valid, ctx)
    history = model.training
    metrics = [epoch.metric for epoch in history.epochs]
    assert history.stopped_early and history.best_epoch < len(metrics)
    assert history.best_metric == min(metrics) == metrics[history.best_epoch - 1]
    assert ctx.validate(model) == pytest.approx(history.best_metric)
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    for key, value in model.network.state_dict().items():
        assert torch.equal(saved[key], value)
    assert [path.name for path in tmp_path.iterdir()] == ["best.pt"]  # no temporary file


def test_lstm_rating_reads_only_earlier_training_events(split):
    """Changing a later or held-out rating leaves an earlier event's prediction alone;
    changing an earlier training rating changes it."""
    sequences = tiny_data().sequences
    model = make("lstm_rating", epochs=1)
    model.fit(split.train, split.valid, rating_fit_context(split))
    test = split.test
    # A test event with earlier training events and later events of the same user.
    user_end = sequences.offsets[test.users + 1]
    candidates = np.flatnonzero((test.history_lengths >= 2) & (user_end - test.events > 3))
    row = int(candidates[0])
    event, user = int(test.events[row]), int(test.users[row])

    def prediction_after(changed: np.ndarray) -> float:
        ratings = sequences.ratings.copy()
        ratings[changed] = np.where(ratings[changed] >= 3, 1.0, 5.0)  # flip, within 1..5
        again = split_ratings(
            dataclasses.replace(sequences, ratings=ratings), RatingOptions(), split.seed
        )
        assert np.array_equal(again.test.events, test.events)  # the same split
        return float(predict_events(model, again.test.select([row]), device="cpu")[0])

    before = prediction_after(np.zeros(0, dtype=np.int64))
    later = np.arange(event + 1, int(sequences.offsets[user + 1]))
    held_out = np.concatenate([split.valid.events, split.test.events])
    assert prediction_after(later) == pytest.approx(before, abs=1e-6)
    assert prediction_after(held_out) == pytest.approx(before, abs=1e-6)
    train = split.train.events
    earlier = train[(train >= sequences.offsets[user]) & (train < event)]
    assert prediction_after(earlier) != pytest.approx(before, abs=1e-6)


#: RMSE on ratings scaled to [0, 1] reported by "PyTorch for Recommenders 101" (Fast
#: Forward Labs, 2018) on MovieLens 100K.
ARTICLE_RMSE = {"mf": 0.66, "dense": 0.28, "lstm_rating": 0.43}


@pytest.mark.slow
@pytest.mark.realdata
def test_ml100k_beats_the_article(real_settings):
    from recbench.data.prepare import prepare_dataset
    from recbench.data.preprocess import PreprocessOptions
    from recbench.progress import Progress
    from recbench.tasks.rating.evaluation import PREPROCESS_DEFAULTS

    data = prepare_dataset(
        "ml-100k",
        {},
        PreprocessOptions(**PREPROCESS_DEFAULTS),
        REGISTRY,
        real_settings,
        Progress.silent(),
    )
    assert data.sequences.n_events == 100_000
    split = split_ratings(data.sequences, RatingOptions(), 0)
    baseline = rmse(np.full(len(split.test), split.train.mean_rating), split.test.ratings)
    for model_id, article in ARTICLE_RMSE.items():
        model = make(model_id, **({"epochs": 2} if model_id == "lstm_rating" else {}))
        model.fit(split.train, split.valid, rating_fit_context(split))
        value = rmse(predict_events(model, split.test, device="cpu"), split.test.ratings)
        assert value < min(article, baseline), (model_id, value, article, baseline)


def test_the_kit_tells_rating_plugins_apart_and_checks_learning():
    from dataclasses import dataclass
    from typing import ClassVar

    import torch
    from recbench_metrics.rating_metrics import MeanAbsoluteError
    from recbench_rating.mean import GlobalMean

    from recbench.testing import ConformanceError, assert_conforms

    assert_conforms(GlobalMean)  # kind and task told from the class; a constant: the mean
    assert_conforms(MeanAbsoluteError)

    class Noise:
        id = "noise"
        summary = "random ratings"
        version = "1"
        task: ClassVar[str] = "rating"

        @dataclass(frozen=True)
        class Options:
            pass

        def __init__(self, options=None): ...

        def fit(self, train, valid, ctx): ...

        def predict(self, batch):  # the same values for the same batch
            return torch.rand(len(batch.users), generator=torch.Generator().manual_seed(0))

    with pytest.raises(ConformanceError, match="does not beat the global mean"):
        assert_conforms(Noise)
    assert_conforms(Noise, learns=False)

    class Constant(Noise):
        id = "constant"

        def predict(self, batch):
            return torch.full((len(batch.users),), 0.95)

    with pytest.raises(ConformanceError, match="predicts one rating for every event"):
        assert_conforms(Constant)
