"""The rating-prediction track: predict held-out ratings instead of ranking items.

``recbench run --protocols rating --models mean,mf,dense,lstm_rating --dataset ml-100k``
follows "PyTorch for Recommenders 101" (Fast Forward Labs, 2018), which trained matrix
factorisation, a dense network and an LSTM on MovieLens 100K with ratings "scaled between
[0, 1]" and reported the test RMSE. This module holds the protocol: the split, the
scaling, the events and histories models receive, and the evaluation of their
predictions; :mod:`recbench.runner.rating_runner` plans and executes a rating run and writes its
cells, :mod:`recbench.report.rating` renders its report. It knows no concrete model or
metric: rating models and metrics are plugins that declare ``task = "rating"``
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
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from recbench.contracts import RatingBatch, RatingFitContext, RatingMetricContext
from recbench.data.interactions import PADDING_ITEM, Sequences
from recbench.errors import ConfigError, DataError, PluginError
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


@dataclass(frozen=True)
class RatingOptions:
    """Options of the rating protocol (section ``rating``).

    test:
        Share of all rating events held out for testing, in (0, 1).
    valid:
        Share of the remaining (non-test) events held out for validation (early stopping
        and model selection), in [0, 1); 0: no validation share.
    scale:
        ``min-max``: ``(r - low) / (high - low)``; ``max``: ``r / high`` (``low`` and
        ``high``: the smallest and largest rating of the data).
    clip:
        Clip predictions to [0, 1] before the metrics.
    batch_size:
        Events predicted at once.
    """

    test: float = 0.2
    valid: float = 0.1
    scale: Literal["min-max", "max"] = "min-max"
    clip: bool = True
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 < self.test < 1.0:
            raise ValueError(f"test must be a share in (0, 1), got {self.test}")
        if not 0.0 <= self.valid < 1.0:
            raise ValueError(f"valid must be a share in [0, 1), got {self.valid}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


# -- scale -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingScale:
    """How ratings in stars map to [0, 1] and back (see the module docstring)."""

    method: str
    low: float
    high: float

    @classmethod
    def of(cls, ratings: np.ndarray, method: str = "min-max") -> RatingScale:
        """The scale of ``ratings`` (stars): their smallest and largest value."""
        if len(ratings) == 0:
            raise DataError("there are no ratings to scale")
        low, high = float(np.min(ratings)), float(np.max(ratings))
        if method == "min-max" and high <= low:
            raise DataError(
                f"every rating is {low:g}: there is nothing to predict",
                hint="use a dataset with explicit ratings of several values",
            )
        if method == "max" and high <= 0:
            raise DataError(
                f"the largest rating is {high:g}: ratings cannot be divided by it",
                hint="use -o rating.scale=min-max",
            )
        if method not in ("min-max", "max"):
            raise ConfigError(f"unknown rating scale '{method}'", hint="use min-max or max")
        return cls(method, low, high)

    @property
    def offset(self) -> float:
        return self.low if self.method == "min-max" else 0.0

    @property
    def stars_per_unit(self) -> float:
        """Stars per unit of the [0, 1] scale: what an error is multiplied by."""
        return self.high - self.low if self.method == "min-max" else self.high

    def to_unit(self, stars: np.ndarray) -> np.ndarray:
        """Ratings in stars -> the [0, 1] scale (float32)."""
        return ((np.asarray(stars, np.float64) - self.offset) / self.stars_per_unit).astype(
            np.float32
        )

    def to_stars(self, unit: np.ndarray) -> np.ndarray:
        """Scaled ratings -> stars (float64)."""
        return np.asarray(unit, np.float64) * self.stars_per_unit + self.offset

    def describe(self) -> str:
        low, high = f"{self.low:g}", f"{self.high:g}"
        if self.method == "min-max":
            return f"ratings {low}–{high} scaled as (r − {low}) / {self.stars_per_unit:g}"
        return f"ratings {low}–{high} scaled as r / {high}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "low": self.low,
            "high": self.high,
            "stars_per_unit": self.stars_per_unit,
        }


# -- events and histories ------------------------------------------------------------------


@dataclass(frozen=True)
class RatingHistory:
    """The training events of every user, in chronological order, in CSR form.

    The training events of user row ``u`` are ``offsets[u]:offsets[u + 1]`` of
    ``events`` (int64, their index in the prepared data, ascending), ``items`` (int64)
    and ``ratings`` (float32, scaled). A rating model may read it whole (to train a
    sequence model on each user's training sequence); the histories of single events are
    built from it by :meth:`RatingEvents.batch`.
    """

    offsets: np.ndarray
    events: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def count_before(self, users: np.ndarray, events: np.ndarray) -> np.ndarray:
        """int64: how many training events of ``users[j]`` come before event ``events[j]``."""
        return np.searchsorted(self.events, events, side="left") - self.offsets[users]


@dataclass(frozen=True)
class RatingEvents:
    """A set of rating events (training, validation or test), as models receive them.

    Parameters
    ----------
    events:
        int64 ``[N]``: each event's index in the prepared data (ascending; an event is
        identified by it).
    users:
        int64 ``[N]``: the user row, ``0 .. n_users - 1``.
    items:
        int64 ``[N]``: the item id, ``1 .. n_items``.
    ratings:
        float32 ``[N]``: the rating on the [0, 1] scale.
    timestamps:
        int64 ``[N]`` (unix seconds), or ``None`` when the data has none.
    history:
        The training events of every user (:class:`RatingHistory`): the history of an
        event is its user's training events before it.
    n_users, n_items:
        Sizes of the id spaces (of all the data, not only of these events).
    """

    events: np.ndarray
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None
    history: RatingHistory
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.events)

    @cached_property
    def history_lengths(self) -> np.ndarray:
        """int64 ``[N]``: the number of training events of the user before each event."""
        return self.history.count_before(self.users, self.events)

    @property
    def mean_rating(self) -> float:
        """The mean scaled rating (NaN for no events)."""
        return float(self.ratings.mean(dtype=np.float64)) if len(self) else math.nan

    def select(self, index: np.ndarray) -> RatingEvents:
        """The events at positions ``index`` (ascending), with the same history."""
        index = np.asarray(index, dtype=np.int64)
        return RatingEvents(
            events=self.events[index],
            users=self.users[index],
            items=self.items[index],
            ratings=self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            history=self.history,
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def batch(
        self, index: np.ndarray, max_history: int | None, device: torch.device | str
    ) -> RatingBatch:
        """The model input for the events at positions ``index``.

        Each event's history is its user's training events before it, at most the
        ``max_history`` most recent (``None``: all; 0: none), left-padded with item 0 and
        rating 0 (:class:`recbench.contracts.RatingBatch`).
        """
        index = np.asarray(index, dtype=np.int64)
        users = self.users[index]
        available = self.history_lengths[index]
        lengths = available if max_history is None else np.minimum(available, max_history)
        width = int(lengths.max()) if len(index) else 0
        end = self.history.offsets[users] + available  # exclusive, in the history arrays
        columns = np.arange(width, dtype=np.int64)
        source = end[:, None] - width + columns[None, :]
        is_event = columns[None, :] >= (width - lengths)[:, None]
        gather = np.where(is_event, source, 0)
        if len(self.history.items):
            items = np.where(is_event, self.history.items[gather], PADDING_ITEM)
            ratings = np.where(is_event, self.history.ratings[gather], 0.0)
        else:
            items = np.zeros((len(index), width), dtype=np.int64)
            ratings = np.zeros((len(index), width), dtype=np.float32)

        def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

        return RatingBatch(
            users=tensor(users, torch.int64),
            items=tensor(self.items[index], torch.int64),
            history_items=tensor(items, torch.int64),
            history_ratings=tensor(ratings, torch.float32),
            history_lengths=tensor(lengths, torch.int64),
        )


@dataclass(frozen=True)
class RatingSplit:
    """Training, validation and test rating events of one seed, and their scale."""

    train: RatingEvents
    valid: RatingEvents
    test: RatingEvents
    scale: RatingScale
    options: RatingOptions
    seed: int

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def fit_context(
        self,
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
                self.valid,
                device=device,
                batch_size=self.options.batch_size,
                clip=self.options.clip,
            )
            return float(np.sqrt(np.mean((predicted - self.valid.ratings) ** 2)))

        return RatingFitContext(
            n_users=self.n_users,
            n_items=self.n_items,
            device=device,
            seed=self.seed,
            mean_rating=self.train.mean_rating,
            progress=progress or Progress.silent(),
            validate=validate if len(self.valid) else None,
            checkpoint_dir=checkpoint_dir,
        )


def split_ratings(sequences: Sequences, options: RatingOptions, seed: int) -> RatingSplit:
    """Split every rating event of ``sequences`` at random (see the module docstring).

    Deterministic given ``seed``; the scale is that of all the data's ratings.

    Raises
    ------
    ConfigError
        When the data has no ratings, or a set would be empty.
    """
    if sequences.ratings is None:
        raise ConfigError(
            "the rating protocol needs ratings, and this dataset has none",
            where="--dataset",
            hint="use a dataset with explicit ratings, such as ml-100k",
        )
    first, last = int(sequences.offsets[0]), int(sequences.offsets[-1])
    n_events = last - first
    n_test = int(np.floor(options.test * n_events + 0.5))
    n_valid = int(np.floor(options.valid * (n_events - n_test) + 0.5))
    n_train = n_events - n_test - n_valid
    if n_test == 0 or n_train == 0 or (options.valid > 0 and n_valid == 0):
        raise ConfigError(
            f"the rating split of {n_events:,} events leaves a set empty "
            f"(test={options.test:g}, valid={options.valid:g})",
            where="-o rating.test / rating.valid",
            hint="use shares that leave events in training, validation and test",
        )
    permutation = first + np.random.default_rng(seed).permutation(n_events)
    test = np.sort(permutation[:n_test])
    valid = np.sort(permutation[n_test : n_test + n_valid])
    train = np.sort(permutation[n_test + n_valid :])

    scale = RatingScale.of(sequences.ratings[first:last], options.scale)
    scaled = scale.to_unit(sequences.ratings)
    items = sequences.items.astype(np.int64, copy=False)
    user_of_event = np.zeros(len(sequences.items), dtype=np.int64)
    user_of_event[first:last] = np.repeat(
        np.arange(len(sequences), dtype=np.int64), sequences.lengths
    )
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_of_event[train], minlength=len(sequences)), out=offsets[1:])
    history = RatingHistory(
        offsets=offsets, events=train, items=items[train], ratings=scaled[train]
    )

    def events(selected: np.ndarray) -> RatingEvents:
        return RatingEvents(
            events=selected,
            users=user_of_event[selected],
            items=items[selected],
            ratings=scaled[selected],
            timestamps=None if sequences.timestamps is None else sequences.timestamps[selected],
            history=history,
            n_users=len(sequences),
            n_items=int(sequences.n_items),
        )

    return RatingSplit(events(train), events(valid), events(test), scale, options, seed)


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


def aggregation_of(metric: Any) -> str:
    return str(getattr(metric, "aggregation", "mean"))


def in_rating_units(metric: Any) -> bool:
    return bool(getattr(metric, "rating_units", True))


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
    device: torch.device | str,
    batch_size: int = 4096,
    clip: bool = True,
    progress: Progress | None = None,
    description: str = "",
) -> RatingEvaluation:
    """Predict ``events`` with ``model`` and compute every rating metric.

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
        aggregations[metric_id] = aggregation_of(metric)
        if metric.per_query:
            per_event[metric_id] = array
            summary = aggregate(array, aggregations[metric_id])
        else:
            summary = MetricSummary(mean=float(array), ci95=None, n=len(events))
        summaries[metric_id] = summary
        if in_rating_units(metric):
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
