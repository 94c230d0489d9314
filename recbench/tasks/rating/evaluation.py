"""The rating-prediction track: predict held-out ratings instead of ranking items.

``recbench run --protocols rating --models mean,mf,dense,lstm_rating --dataset ml-100k``
follows "PyTorch for Recommenders 101" (Fast Forward Labs, 2018), which trained matrix
factorisation, a dense network and an LSTM on MovieLens 100K with ratings "scaled between
[0, 1]" and reported the test RMSE. This module holds the protocol and the evaluation
of the predictions; the split, the scaling, and the events and histories models receive
are in :mod:`recbench.data.ratings`; :mod:`recbench.tasks.rating.task` is the task the
runner runs with it, and :mod:`recbench.report.rating_sections` renders its report
sections. It knows no concrete model or metric: rating models and metrics are plugins that declare ``task = "rating"``
(:class:`recbench.contracts.RatingModel`, :class:`recbench.contracts.RatingMetric`).

The protocol
------------
Split
    A seeded random permutation of every rating event of the prepared data: the first
    ``test`` share (default 20%) is the test set; ``valid`` (default 10%) of the remaining
    events is the validation share; the rest (72% of all events by default) is training.
    Validation serves early stopping and model selection only: models are not refitted on
    it. ``valid = 0`` means no validation share (no early stopping). Each seed re-splits.
Scale
    Ratings ``r`` on the data's star scale ``[low, high]`` (the smallest and largest
    rating of the prepared data: 1 and 5 for MovieLens) become ``(r - low) / (high - low)``
    (``scale = "min-max"``, the default) or ``r / high`` (``scale = "max"``). The article
    says only "scaled between [0, 1]"; min-max is the transformation that maps the star
    scale onto [0, 1], and the stricter one: a given error in stars is a larger scaled
    error (1/4 of it on a 1-5 scale instead of 1/5). Models are trained, and errors first
    reported, on this scale; an error in rating units converts to stars by multiplying by
    ``high - low`` (min-max) or ``high`` (max).
History
    A model that reads one (``max_history``) receives, for each event of user ``u``, the
    ratings of ``u``'s **training** events that come before the event in ``u``'s
    chronological order (timestamp, then the file's row order), at most its
    ``max_history`` most recent. Validation and test ratings never enter a history, so no
    held-out rating reaches any prediction, and no later event reaches an earlier one.
Predictions and metrics
    Predictions are clipped to [0, 1] (``clip``) before the metrics. Metrics return one
    value per test event (the squared error for ``rmse``, the absolute error for ``mae``)
    and declare how the core aggregates them (:func:`aggregate`): the mean, or the square
    root of the mean (RMSE). The per-event arrays are kept with the results (paired
    tests); the 95% interval is the normal one over events, through the delta method for
    a root mean.

Options are set as ``-o rating.KEY=VALUE`` (:class:`RatingOptions`). By default a rating
run keeps every rated event (``preprocess.min_item_pop=1``, ``min_user_activity=1``, as
the article used all 100,000 ratings); ``-o preprocess.*`` still applies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.contracts import RatingFitContext, RatingMetricContext
from recbench.data.ratings import RatingEvents, RatingScale, RatingSplit
from recbench.errors import ConfigError, PluginError
from recbench.progress import Progress
from recbench.stats.summary import MetricSummary, summarize

RATING_TASK = "rating"
#: The option section of the rating protocol (``-o rating.test=0.2``).
OPTION_SECTION = "rating"
#: Preprocessing defaults of a rating run: keep every rated event.
PREPROCESS_DEFAULTS: dict[str, Any] = {"min_item_pop": 1, "min_user_activity": 1}
#: How per-event values become the reported value.
AGGREGATIONS = ("mean", "root_mean")
#: Suffix of the metric names that hold a value converted to stars.
STARS_SUFFIX = "_stars"
SPLIT_METHOD = "random-events"
#: The most history cells (events x history length) predicted in one batch.
HISTORY_CELLS_PER_BATCH = 2**18


def rating_fit_context(
    split: RatingSplit,
    device: torch.device | str = "cpu",
    *,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
) -> RatingFitContext:
    """The context a run gives a rating model: ``validate(model)`` is the validation
    RMSE (scaled, clipped as the options say; ``None`` without a validation share)."""
    device = torch.device(device)

    def validate(model: Any) -> float:
        predicted = predict_events(
            model,
            split.valid,
            device=device,
            batch_size=split.options.batch_size,
            clip=split.options.clip,
        )
        return float(np.sqrt(np.mean((predicted - split.valid.ratings) ** 2)))

    return RatingFitContext(
        n_users=split.n_users,
        n_items=split.n_items,
        device=device,
        seed=split.seed,
        mean_rating=split.train.mean_rating,
        progress=progress or Progress.silent(),
        validate=validate if len(split.valid) else None,
        checkpoint_dir=checkpoint_dir,
    )


# -- prediction and evaluation ---------------------------------------------------------------


def max_history_of(model: Any) -> int | None:
    """The model's ``max_history`` (absent: 0), checked."""
    value = getattr(model, "max_history", 0)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise PluginError(
            f"max_history must be None or an integer >= 0, got {value!r}",
            where=f"model '{getattr(model, 'id', type(model).__name__)}'",
        )
    return value


def predict_events(
    model: Any,
    events: RatingEvents,
    *,
    device: torch.device | str,
    batch_size: int = 4096,
    clip: bool = True,
    progress: Progress | None = None,
    description: str = "",
) -> np.ndarray:
    """float64 ``[N]``: the model's predictions of ``events`` (scaled; clipped to [0, 1]
    with ``clip``), in batches of at most ``batch_size`` events on ``device``. For a model
    that reads histories, events are batched by history length, so that little padding is
    scored, and a batch holds at most :data:`HISTORY_CELLS_PER_BATCH` history cells.

    Raises
    ------
    PluginError
        When ``predict`` returns something else than finite floats of shape ``[B]``.
    """
    max_history = max_history_of(model)
    name = f"model '{getattr(model, 'id', type(model).__name__)}'.predict"
    lengths = events.history_lengths
    if max_history is not None:
        lengths = np.minimum(lengths, max_history)
    order = np.argsort(lengths, kind="stable").astype(np.int64)
    predicted = np.empty(len(events), dtype=np.float64)
    progress = progress or Progress.silent()
    with progress.task(description or "Predicting ratings", total=len(events)) as bar:
        first = 0
        while first < len(events):
            index = order[first : first + batch_size]
            width = int(lengths[index[-1]])  # the longest: lengths ascend along order
            index = index[: max(1, HISTORY_CELLS_PER_BATCH // max(width, 1))]
            first += len(index)
            batch = events.batch(index, max_history, device)
            with torch.no_grad():
                values = model.predict(batch)
            if not isinstance(values, torch.Tensor) or tuple(values.shape) != (len(index),):
                got = list(values.shape) if isinstance(values, torch.Tensor) else type(values)
                raise PluginError(
                    f"predict() returned {got} for {len(index)} events",
                    where=name,
                    hint=f"return a float tensor of shape [{len(index)}]",
                )
            if not values.is_floating_point() or not bool(torch.isfinite(values).all()):
                raise PluginError("predict() returned non-finite or non-float values", where=name)
            predicted[index] = values.detach().to("cpu", torch.float64).numpy()
            bar.advance(len(index))
    if clip:
        np.clip(predicted, 0.0, 1.0, out=predicted)
    return predicted


def aggregate(values: np.ndarray, aggregation: str = "mean") -> MetricSummary:
    """The reported value of per-event ``values`` and its 95% half-width.

    ``mean``: the mean (:func:`recbench.stats.summary.summarize`). ``root_mean``: the square
    root of the mean (RMSE from squared errors); its half-width is the mean's divided by
    ``2 * sqrt(mean)`` (the delta method), ``None`` when the value is 0.
    """
    summary = summarize(values)
    if aggregation == "mean":
        return summary
    if aggregation == "root_mean":
        root = math.sqrt(max(summary.mean, 0.0))
        ci95 = None if summary.ci95 is None or root == 0 else summary.ci95 / (2 * root)
        return MetricSummary(mean=root, ci95=ci95, n=summary.n)
    raise PluginError(
        f"unknown aggregation '{aggregation}'", hint=f"use one of {', '.join(AGGREGATIONS)}"
    )


@dataclass
class RatingEvaluation:
    """Metric values of one rating model on a set of events.

    ``summaries`` maps a metric id to its value on the [0, 1] scale and, for metrics in
    rating units, ``<id>_stars`` to the same value in stars; ``per_event`` holds the
    per-event arrays of per-event metrics (float64 ``[N]``).
    """

    n_events: int
    n_users: int
    summaries: dict[str, MetricSummary]
    per_event: dict[str, np.ndarray]
    aggregations: dict[str, str]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.n_events / self.seconds if self.seconds > 0 else float("inf")


def evaluate_ratings(
    model: Any,
    events: RatingEvents,
    metrics: Mapping[str, Any],
    scale: RatingScale,
    *,
    registrations: Mapping[str, Any],
    device: torch.device | str,
    batch_size: int = 4096,
    clip: bool = True,
    progress: Progress | None = None,
    description: str = "",
) -> RatingEvaluation:
    """Predict ``events`` with ``model`` and compute every rating metric.

    ``metrics`` maps a metric id to the metric; ``registrations`` maps it to its
    registration record (:class:`recbench.registry.PluginInfo`), which says how its
    per-event values are aggregated and whether it is in rating units (also in stars).

    Raises
    ------
    ConfigError
        When there are no events.
    PluginError
        When the model's predictions or a metric's values have the wrong shape or type.
    """
    if len(events) == 0:
        raise ConfigError("there are no rating events to evaluate", where="-o rating.test")
    started = time.perf_counter()
    predicted = predict_events(
        model,
        events,
        device=device,
        batch_size=batch_size,
        clip=clip,
        progress=progress,
        description=description,
    )
    actual = events.ratings.astype(np.float64)
    context = RatingMetricContext(
        users=torch.from_numpy(events.users),
        items=torch.from_numpy(events.items),
        n_items=events.n_items,
    )
    summaries: dict[str, MetricSummary] = {}
    per_event: dict[str, np.ndarray] = {}
    aggregations: dict[str, str] = {}
    for metric_id, metric in metrics.items():
        values = metric(torch.from_numpy(predicted), torch.from_numpy(actual), context)
        expected = (len(events),) if metric.per_query else ()
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != expected:
            got = list(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise PluginError(
                f"metric '{metric_id}' returned {got}",
                where=f"metric '{metric_id}'",
                hint=f"return a tensor of shape {list(expected)}",
            )
        array = values.detach().to("cpu", torch.float64).numpy()
        aggregations[metric_id] = registrations[metric_id].aggregation
        if metric.per_query:
            per_event[metric_id] = array
            summary = aggregate(array, aggregations[metric_id])
        else:
            summary = MetricSummary(mean=float(array), ci95=None, n=len(events))
        summaries[metric_id] = summary
        if registrations[metric_id].rating_units:
            factor = scale.stars_per_unit
            summaries[metric_id + STARS_SUFFIX] = MetricSummary(
                mean=summary.mean * factor,
                ci95=None if summary.ci95 is None else summary.ci95 * factor,
                n=summary.n,
            )
    return RatingEvaluation(
        n_events=len(events),
        n_users=len(np.unique(events.users)),
        summaries=summaries,
        per_event=per_event,
        aggregations=aggregations,
        seconds=time.perf_counter() - started,
    )
