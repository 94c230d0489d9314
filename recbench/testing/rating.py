"""The kit's checks of rating models and rating metrics (``task = "rating"``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recbench.testing.checker import (
    Checker,
    Settings,
    construct,
    construct_with_epochs,
    varied_lengths,
)
from recbench.testing.metrics import check_metric_metadata, check_metric_range, metric_output

if TYPE_CHECKING:
    import torch

    from recbench.data.ratings import RatingEvents, RatingSplit

#: Absolute tolerance when comparing two predictions of the same rating event.
RATING_TOLERANCE = 1e-5


def check_rating_model(checker: Checker, options: Mapping[str, Any], settings: Settings) -> None:
    """Train the rating model on the tiny rating split, then check its predictions, the
    padding of histories and that it beats the global mean."""
    import torch

    from recbench.errors import PluginError
    from recbench.runner.seeding import seed_everything
    from recbench.tasks.rating.evaluation import max_history_of, rating_fit_context

    model, epoch_key, epochs = construct_with_epochs(checker, options, settings)
    try:
        max_history = max_history_of(model)
    except PluginError as exc:
        raise checker.fail(exc.what) from None
    split = settings.tiny_data().ratings
    device = torch.device(settings.device)
    seed_everything(0)
    checker.call(
        f"fit() on the tiny rating data ({len(split.train):,} training ratings, "
        f"{split.n_users:,} users, {split.n_items} items)",
        model.fit,
        split.train,
        split.valid,
        rating_fit_context(split, device),
    )
    with torch.no_grad():
        _check_rating_predictions(checker, model, split.test, max_history, device)
        if max_history != 0:
            _check_rating_padding(checker, model, split.test, max_history, device)
    if settings.learns:
        _check_rating_learns(checker, model, split, device, epoch_key, epochs)


def _predict(checker: Checker, model: Any, batch: Any, what: str) -> torch.Tensor:
    return checker.call(f"predict() on {what}", model.predict, batch)


def _check_rating_predictions(
    checker: Checker,
    model: Any,
    events: RatingEvents,
    max_history: int | None,
    device: torch.device,
) -> None:
    import torch

    index = varied_lengths(events.history_lengths, 16)
    for rows in (index, index[:1]):
        batch = events.batch(rows, max_history, device)
        predicted = _predict(checker, model, batch, f"a batch of {len(rows)}")
        if not isinstance(predicted, torch.Tensor):
            raise checker.fail(
                f"predict() returned a {type(predicted).__name__}, not a torch.Tensor"
            )
        if list(predicted.shape) != [len(rows)]:
            raise checker.fail(
                f"predict() returned shape {list(predicted.shape)} for {len(rows)} events: it "
                f"must be [batch] = [{len(rows)}], one rating per event"
            )
        if not predicted.is_floating_point():
            raise checker.fail(f"predict() returned {predicted.dtype} ratings: return floats")
        if predicted.device != device:
            raise checker.fail(
                f"predict() returned ratings on {predicted.device}, the model was trained on "
                f"{device}: return them on the model's device (ctx.device)"
            )
        if not bool(torch.isfinite(predicted).all()):
            raise checker.fail("predict() returned NaN or infinite ratings")
        again = _predict(checker, model, batch, f"a batch of {len(rows)}")
        if not torch.allclose(again, predicted, atol=RATING_TOLERANCE, rtol=0):
            raise checker.fail(
                "predict() returned different ratings for the same batch: after fit() the "
                "model must predict deterministically (eval mode, no dropout)"
            )


def _check_rating_padding(
    checker: Checker,
    model: Any,
    events: RatingEvents,
    max_history: int | None,
    device: torch.device,
) -> None:
    """An event predicted alone equals its prediction left-padded among longer histories."""
    index = varied_lengths(events.history_lengths, 12)
    together = events.batch(index, max_history, device)
    predicted = _predict(checker, model, together, "a padded batch")
    width = int(together.history_items.shape[1])
    for row in range(len(index)):
        length = int(together.history_lengths[row])
        if length == width:
            continue
        alone = _predict(
            checker,
            model,
            events.batch(index[row : row + 1], max_history, device),
            "a single event",
        )
        difference = float((alone[0] - predicted[row]).abs())
        if difference > RATING_TOLERANCE:
            raise checker.fail(
                f"padding changes the predictions: an event with {length} earlier training "
                f"events predicted alone and left-padded to {width} in a batch differ by "
                f"{difference:.3g}; item 0 and rating 0 are padding: use batch.history_lengths"
            )


def _check_rating_learns(
    checker: Checker,
    model: Any,
    split: RatingSplit,
    device: torch.device,
    epoch_key: str | None,
    epochs: Any,
) -> None:
    """A model whose predictions vary must beat the global mean; one that predicts a
    single value (not personalised by design) must match it."""
    import numpy as np

    from recbench.tasks.rating.evaluation import predict_events

    test = split.test
    predicted = checker.call(
        "predicting the test ratings", predict_events, model, test, device=device
    )
    rmse = float(np.sqrt(np.mean((predicted - test.ratings) ** 2)))
    baseline = float(np.sqrt(np.mean((split.train.mean_rating - test.ratings) ** 2)))
    if float(np.ptp(predicted)) <= 1e-9:
        if rmse <= baseline * (1 + 1e-6) + 1e-12:
            return
        raise checker.fail(
            f"it predicts one rating for every event ({predicted[0]:.4f}) with RMSE {rmse:.4f}, "
            f"worse than the mean training rating ({split.train.mean_rating:.4f}, RMSE "
            f"{baseline:.4f}): a constant predictor should predict the mean training rating"
        )
    if rmse < baseline:
        return
    trained = f"after {epochs} epoch(s)" if epoch_key is not None else "after fit()"
    raise checker.fail(
        f"it does not beat the global mean on the tiny rating data {trained}: RMSE {rmse:.4f} "
        f"against {baseline:.4f} for the mean training rating ({len(test):,} test ratings, "
        "[0, 1] scale); check that it learns (or give it more epochs with "
        "assert_conforms(..., epochs=N)); pass learns=False only for a model that is not "
        "personalised by design"
    )


def check_rating_metric(checker: Checker, options: Mapping[str, Any], settings: Settings) -> None:
    """Values per event, within bounds, repeatable, on perfect, global-mean, random,
    all-zero and all-one predictions; perfect predictions score best."""
    import numpy as np
    import torch

    from recbench.contracts import RatingMetricContext
    from recbench.tasks.rating.evaluation import AGGREGATIONS, aggregate

    check_metric_metadata(checker)
    cls = checker.cls
    aggregation = getattr(cls, "aggregation", "mean")
    if aggregation not in AGGREGATIONS:
        raise checker.fail(
            f"'aggregation' must be one of {', '.join(map(repr, AGGREGATIONS))}, got "
            f"{aggregation!r}"
        )
    if not isinstance(getattr(cls, "rating_units", True), bool):
        raise checker.fail(f"'rating_units' must be True or False, got {cls.rating_units!r}")
    metric = construct(checker, options)
    split = settings.tiny_data().ratings
    test = split.test
    actual = torch.from_numpy(test.ratings.astype(np.float64))
    context = RatingMetricContext(
        users=torch.from_numpy(test.users), items=torch.from_numpy(test.items), n_items=test.n_items
    )
    generator = torch.Generator().manual_seed(0)
    scenarios = {
        "perfect": actual.clone(),
        "mean": torch.full_like(actual, split.train.mean_rating),
        "random": torch.rand(len(actual), generator=generator, dtype=torch.float64),
        "all-zero": torch.zeros_like(actual),
        "all-one": torch.ones_like(actual),
    }
    reported: dict[str, float] = {}
    for scenario, predicted in scenarios.items():
        where = f"{scenario} predictions of {len(actual):,} test ratings"
        values = _rating_metric_values(checker, metric, predicted, actual, context, where)
        reported[scenario] = (
            aggregate(values.numpy(), aggregation).mean if cls.per_query else float(values)
        )
    perfect = reported["perfect"]
    for scenario, value in reported.items():
        worse = value > perfect + 1e-9 if cls.higher_is_better else value < perfect - 1e-9
        if worse:
            raise checker.fail(
                f"{scenario} predictions score {value:.6g}, better than perfect ones "
                f"({perfect:.6g}, higher_is_better={cls.higher_is_better})"
            )


def _rating_metric_values(
    checker: Checker,
    metric: Any,
    predicted: torch.Tensor,
    actual: torch.Tensor,
    context: Any,
    where: str,
) -> torch.Tensor:
    import torch

    before = (predicted.clone(), actual.clone())
    call = functools.partial(
        checker.call, f"the metric ({where})", metric, predicted, actual, context
    )
    values = metric_output(checker, call(), len(actual), where, unit="event", units="events")
    if not (torch.equal(predicted, before[0]) and torch.equal(actual, before[1])):
        raise checker.fail(f"it modified its inputs in place ({where})")
    return check_metric_range(checker, values, call, where, name_query=False, same="predictions")
