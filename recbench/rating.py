"""The rating-prediction track: predict held-out ratings instead of ranking items.

``recbench run --protocols rating --models mean,mf,dense,lstm_rating --dataset ml-100k``
follows "PyTorch for Recommenders 101" (Fast Forward Labs, 2018), which trained matrix
factorisation, a dense network and an LSTM on MovieLens 100K with ratings "scaled between
[0, 1]" and reported the test RMSE. This module holds the whole track: the split, the
scaling, the events and histories models receive, the evaluation, the cells of a run and
their report. It knows no concrete model or metric: rating models and metrics are plugins
that declare ``task = "rating"`` (:class:`recbench.contracts.RatingModel`,
:class:`recbench.contracts.RatingMetric`).

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

import hashlib
import json
import math
import random
import shlex
import time
import traceback
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

import recbench
from recbench import sweep
from recbench.contracts import RatingBatch, RatingFitContext, RatingMetricContext
from recbench.errors import ConfigError, DataError, PluginError
from recbench.interactions import PADDING_ITEM, Sequences
from recbench.options import as_dict, parse_options
from recbench.progress import Progress
from recbench.protocols import RATING_PROTOCOL, canonical_protocol
from recbench.statistics import MetricSummary, summarize

if TYPE_CHECKING:
    from recbench.config import RunConfig
    from recbench.data import PreparedData
    from recbench.registry import PluginInfo, Registry
    from recbench.results import RunDirectory
    from recbench.settings import Settings

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

    ``mean``: the mean (:func:`recbench.statistics.summarize`). ``root_mean``: the square
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


# -- which task a run is for -------------------------------------------------------------


def run_task(config: RunConfig, registry: Registry) -> str:
    """``"rating"`` or ``"ranking"``: the task of the run's protocols, after checking that
    its protocols, models and metrics all serve it.

    Raises
    ------
    ConfigError
        Unknown names, the rating protocol beside ranking protocols, or a model or metric
        of the other task.
    """
    protocols = list(dict.fromkeys(canonical_protocol(p) for p in config.protocols))
    ranking = [p for p in protocols if p != RATING_PROTOCOL]
    if RATING_PROTOCOL in protocols and ranking:
        raise ConfigError(
            f"the rating protocol cannot be mixed with ranking protocols ({', '.join(ranking)})",
            where="--protocols",
            hint="run --protocols rating on its own, and the ranking protocols in another run",
        )
    task = RATING_TASK if RATING_PROTOCOL in protocols else "ranking"
    what = (
        "the rating protocol"
        if task == RATING_TASK
        else f"the ranking protocol{'s' if len(protocols) > 1 else ''} {', '.join(protocols)}"
    )
    for kind, names, flag in (
        ("model", config.models, "--models"),
        ("metric", config.metrics, "--metrics"),
    ):
        for name in names:
            info = registry.get(kind, name)
            if info.task == task:
                continue
            fitting = sorted(i.id for i in registry.all(kind) if i.task == task)
            does = "predicts ratings" if info.task == RATING_TASK else "ranks items"
            if kind == "metric":
                does = "measures rating errors" if info.task == RATING_TASK else "measures rankings"
            if task == RATING_TASK:
                hint = f"use {kind}s of the rating task ({', '.join(fitting) or 'none installed'})"
            else:
                hint = f"run '{info.id}' with --protocols rating, in a run of its own"
            if kind == "metric":
                hint += ", or leave --metrics out to get every metric of the task"
            raise ConfigError(
                f"{kind} '{info.id}' {does} and cannot run under {what}", where=flag, hint=hint
            )
    return task


def task_metrics(registry: Registry, task: str) -> list[PluginInfo]:
    """Every registered metric of ``task``, in registration order."""
    return [info for info in registry.all("metric") if info.task == task]


# -- a rating run --------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingModelPlan:
    info: PluginInfo
    options: Any
    label: str
    swept: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RatingPlan:
    """A rating run's configuration with every name looked up and every option parsed."""

    config: RunConfig
    models: tuple[RatingModelPlan, ...]
    metrics: tuple[tuple[PluginInfo, Any], ...]
    dataset_options: Mapping[str, Any]
    preprocess: Any
    options: RatingOptions
    export: Mapping[str, Any]

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration, as stored with the results."""
        return {
            "task": RATING_TASK,
            "models": {
                m.label: {
                    "id": m.info.id,
                    "version": m.info.version,
                    "options": as_dict(m.options),
                    **({"swept": dict(m.swept)} if m.swept else {}),
                    **({"baseline": True} if getattr(m.info.cls, "baseline", False) else {}),
                }
                for m in self.models
            },
            "model_order": [m.label for m in self.models],
            "dataset": {"name": self.config.dataset, "options": dict(self.dataset_options)},
            "protocols": [RATING_PROTOCOL],
            "seeds": list(self.config.seeds),
            "metrics": {
                info.id: {
                    "version": info.version,
                    "options": as_dict(options),
                    "task": RATING_TASK,
                    "higher_is_better": bool(info.cls.higher_is_better),
                    "per_query": bool(info.cls.per_query),
                    "aggregation": aggregation_of(info.cls),
                    "rating_units": in_rating_units(info.cls),
                }
                for info, options in self.metrics
            },
            "metric_order": [info.id for info, _ in self.metrics],
            # Not used by the rating protocol; kept so that the stored configuration reads
            # back as a RunConfig (recbench.api.stored_run_config).
            "cutoffs": list(self.config.cutoffs),
            "preprocess": as_dict(self.preprocess),
            OPTION_SECTION: as_dict(self.options),
            "export": dict(self.export),
            "device": self.config.device,
        }


def plan_rating_run(config: RunConfig, registry: Registry) -> RatingPlan:
    """Look up every name and parse every option of a rating run; raise on the first error."""
    from recbench.config import check_sections
    from recbench.export import ExportOptions
    from recbench.preprocess import PreprocessOptions

    options = config.options
    models = []
    for name in config.models:
        info = registry.get("model", name)
        for variant in sweep.expand(info.id, info.cls.Options, options.get(info.id, {})):
            parsed = parse_options(
                info.cls.Options, variant.values, owner=f"model '{variant.label}'"
            )
            models.append(RatingModelPlan(info, parsed, variant.label, dict(variant.swept)))
    metric_infos = [registry.get("metric", name) for name in config.metrics] or task_metrics(
        registry, RATING_TASK
    )
    if not metric_infos:
        raise ConfigError(
            "no rating metric is registered", hint="check 'recbench list metrics' (rmse, mae)"
        )
    metrics = tuple(
        (
            info,
            parse_options(info.cls.Options, options.get(info.id, {}), owner=f"metric '{info.id}'"),
        )
        for info in metric_infos
    )
    for section in ("split", "eval"):
        if section in options:
            raise ConfigError(
                f"options of section '{section}' do not apply to the rating protocol",
                where=f"-o {section}.*",
                hint="the rating split is set with -o rating.test=0.2 -o rating.valid=0.1",
            )
    dataset_id = config.dataset.partition(":")[0]
    dataset_info = registry.get("dataset", dataset_id)
    known = {"preprocess", OPTION_SECTION, "export", dataset_info.id, dataset_id}
    known |= {m.label for m in models} | {m.info.id for m in models}
    known |= {info.id for info, _ in metrics}
    check_sections(options, known)
    export = parse_options(ExportOptions, options.get("export", {}), owner="section 'export'")
    return RatingPlan(
        config=config,
        models=tuple(models),
        metrics=metrics,
        dataset_options=dict(options.get(dataset_info.id, {})) | dict(options.get(dataset_id, {})),
        preprocess=parse_options(
            PreprocessOptions,
            {**PREPROCESS_DEFAULTS, **options.get("preprocess", {})},
            owner="section 'preprocess'",
        ),
        options=parse_options(
            RatingOptions, options.get(OPTION_SECTION, {}), owner=f"section '{OPTION_SECTION}'"
        ),
        export=as_dict(export),
    )


def execute_rating(
    config: RunConfig,
    *,
    out: Path,
    resume: bool,
    registry: Registry,
    settings: Settings,
    progress: Progress,
    command: list[str] | None = None,
    export_only: Collection[str] | None = None,
) -> RunDirectory:
    """Run the rating benchmark described by ``config`` into the run directory ``out``.

    Each (model, seed) cell is written as soon as it is finished; with ``resume`` the
    cells finished with the same key are skipped; a model that raises is marked failed
    and the run goes on. Rating models have no one-step ``cell()``: nothing is exported
    or timed (``export_only``, from ``recbench export``, does nothing).
    """
    from recbench.data import prepare_dataset
    from recbench.environment import describe_environment, resolve_device
    from recbench.results import RunDirectory, write_json

    plan = plan_rating_run(config, registry)
    device = resolve_device(config.device)
    if export_only is not None:
        progress.log("Rating models have no one-step cell: nothing to export", style="dim")
        return RunDirectory.open(out)
    if "export" in config.options and plan.export.get("enabled"):
        progress.log(
            "ONNX export and latency are skipped: rating models have no one-step cell",
            style="dim",
        )
    RunDirectory.check_available(out, resume=resume)
    data = prepare_dataset(
        config.dataset, plan.dataset_options, plan.preprocess, registry, settings, progress
    )
    if data.sequences.ratings is None:
        raise ConfigError(
            f"the rating protocol needs ratings, and {data.name} has none",
            where="--dataset",
            hint="use a dataset with explicit ratings, such as ml-100k",
        )
    run_dir = RunDirectory.create(out, resume=resume)
    write_json(
        run_dir.path / "config.json",
        {
            "command": shlex.join(command) if command else None,
            "recbench": recbench.__version__,
            "config": plan.resolved(),
        },
    )
    write_json(run_dir.path / "environment.json", describe_environment(registry, device))
    write_json(
        run_dir.path / "dataset.json",
        {
            "name": data.name,
            "id": data.dataset_id,
            "key": data.key,
            "statistics": data.statistics,
            "preprocessing": data.preprocessing,
        },
    )
    metrics = {info.id: info.cls(options) for info, options in plan.metrics}
    for seed in config.seeds:
        split = split_ratings(data.sequences, plan.options, seed)
        for model_plan in plan.models:
            _run_rating_model(run_dir, plan, model_plan, data, split, metrics, device, progress)
    return run_dir


def rating_cell_key(plan: RatingPlan, model: RatingModelPlan, data: PreparedData, seed: int) -> str:
    """Hash of everything that changes a rating cell's result."""
    resolved = plan.resolved()
    payload = {
        "recbench": recbench.__version__,
        "plugin_api": recbench.PLUGIN_API_VERSION,
        "model": resolved["models"][model.label],
        "model_distribution": [model.info.distribution, model.info.distribution_version],
        "dataset": data.key,
        OPTION_SECTION: resolved[OPTION_SECTION],
        "metrics": resolved["metrics"],
        "protocol": RATING_PROTOCOL,
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run_rating_model(
    run_dir: RunDirectory,
    plan: RatingPlan,
    model_plan: RatingModelPlan,
    data: PreparedData,
    split: RatingSplit,
    metrics: Mapping[str, Any],
    device: torch.device,
    progress: Progress,
) -> None:
    from recbench.results import cell_name

    label, seed = model_plan.label, split.seed
    name = cell_name(data.name, label, RATING_PROTOCOL, seed)
    key = rating_cell_key(plan, model_plan, data, seed)
    existing = run_dir.read_cell(name)
    if existing is not None and existing.get("key") == key and existing.get("status") == "ok":
        progress.log(f"{label} (seed {seed}): finished earlier, skipped", style="dim")
        return
    base = {
        "key": key,
        "protocol": RATING_PROTOCOL,
        "task": RATING_TASK,
        "model": model_plan.info.id,
        "model_label": label,
        "model_version": model_plan.info.version,
        "model_options": as_dict(model_plan.options),
        "model_distribution": model_plan.info.distribution,
        "model_distribution_version": model_plan.info.distribution_version,
        "dataset": data.name,
        "dataset_key": data.key,
        "seed": seed,
        "split": {
            "method": SPLIT_METHOD,
            **as_dict(plan.options),
            "train_events": len(split.train),
            "valid_events": len(split.valid),
            "test_events": len(split.test),
            "train_users": int(np.count_nonzero(split.train.history.lengths)),
            "valid_users": len(np.unique(split.valid.users)),
            "test_users": len(np.unique(split.test.users)),
        },
        "scale": split.scale.as_dict(),
        "max_history": None,
    }
    ctx = split.fit_context(
        device,
        progress=progress,
        checkpoint_dir=run_dir.path / "checkpoints" / cell_name(data.name, label, "fit", seed),
    )
    try:
        _seed_everything(seed)
        model = model_plan.info.cls(model_plan.options)
        base["max_history"] = max_history_of(model)
        progress.log(f"Training {label} on {data.name} (seed {seed}, {len(split.train):,} ratings)")
        started = time.perf_counter()
        model.fit(split.train, split.valid if len(split.valid) else None, ctx)
        fit_seconds = time.perf_counter() - started
        result = evaluate_ratings(
            model,
            split.test,
            metrics,
            split.scale,
            device=device,
            batch_size=plan.options.batch_size,
            clip=plan.options.clip,
            progress=progress,
            description=f"Evaluating {label} (rating, seed {seed})",
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        progress.log(f"{label} (seed {seed}) failed: {reason}", style="red")
        failed = dict(base, status="failed", error=reason, traceback=traceback.format_exc(limit=8))
        run_dir.write_cell(name, failed, {})
        return
    cell = dict(
        base,
        status="ok",
        n_queries=result.n_events,
        n_users=result.n_users,
        metrics={
            metric: {
                "mean": summary.mean,
                "ci95": summary.ci95,
                "n": summary.n,
                "per_query": metric in result.per_event,
                "aggregation": result.aggregations.get(metric.removesuffix(STARS_SUFFIX), "mean"),
                "higher_is_better": bool(
                    metrics[metric.removesuffix(STARS_SUFFIX)].higher_is_better
                ),
                "unit": "stars" if metric not in result.aggregations else "scaled",
            }
            for metric, summary in result.summaries.items()
        },
        timing={
            "fit_seconds": fit_seconds,
            "eval_seconds": result.seconds,
            "queries_per_second": result.events_per_second,
        },
    )
    run_dir.write_cell(name, cell, result.per_event)
    shown = ", ".join(
        f"{metric} {summary.mean:.4f}" for metric, summary in result.summaries.items()
    )
    progress.log(f"{label} (seed {seed}): {shown}")


# -- the report ------------------------------------------------------------------------------


def is_rating_run(config: Mapping[str, Any]) -> bool:
    """Whether a stored run configuration (``config.json``'s ``config``) is a rating run."""
    return RATING_PROTOCOL in config.get("protocols", ())


def _over_seeds(means: Sequence[float], cis: Sequence[float | None]) -> tuple[float, float | None]:
    """Mean over seeds and its 95% half-width (Student t over seeds; with one seed, the
    cell's own interval over events)."""
    if len(means) == 1:
        return float(means[0]), cis[0]
    from scipy import stats

    values = np.asarray(means, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def render_rating_report(run_dir: RunDirectory) -> str:
    """The markdown report of a rating run: environment, dataset, protocol, a table of
    every model's errors on the [0, 1] scale and in stars (mean ± 95% half-width, the best
    of each column in bold), timing and failures."""
    from recbench.report import STATISTICS_ORDER, _format_stat, escape, markdown_table
    from recbench.results import read_json

    config_file = read_json(run_dir.path / "config.json")
    config = config_file["config"]
    environment = read_json(run_dir.path / "environment.json")
    dataset_path = run_dir.path / "dataset.json"
    dataset = read_json(dataset_path) if dataset_path.is_file() else None
    cells = [c for c in run_dir.cells() if c.get("protocol") == RATING_PROTOCOL]
    ok = [c for c in cells if c.get("status") == "ok"]
    failed = [c for c in cells if c.get("status") != "ok"]
    models = config.get("model_order") or list(config["models"])
    meta = config.get("metrics", {})
    seeds = config.get("seeds", [])

    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for cell in ok:
        grouped.setdefault(cell["model_label"], []).append(cell)
    metric_ids = config.get("metric_order") or sorted(meta, key=_metric_rank)
    names = [*metric_ids] + [
        m + STARS_SUFFIX for m in metric_ids if meta.get(m, {}).get("rating_units", True)
    ]
    names = [n for n in names if any(n in c["metrics"] for c in ok)]
    aggregated: dict[tuple[str, str], tuple[float, float | None]] = {}
    for label, group in grouped.items():
        for name in names:
            present = [g["metrics"][name] for g in group if name in g["metrics"]]
            if present:
                aggregated[(label, name)] = _over_seeds(
                    [p["mean"] for p in present], [p["ci95"] for p in present]
                )

    def higher(name: str) -> bool:
        return bool(meta.get(name.removesuffix(STARS_SUFFIX), {}).get("higher_is_better", False))

    title = dataset["name"] if dataset else config["dataset"]["name"]
    lines = [f"# recbench report: {escape(title)} (rating prediction)", ""]
    lines += [_rating_summary(models, names, aggregated, higher, config, len(seeds)), ""]

    lines += ["## Environment", ""]
    if config_file.get("command"):
        lines += [f"- Command: `{config_file['command']}`"]
    lines += [
        f"- recbench {environment.get('recbench')} (git {environment.get('git') or 'unknown'}), "
        f"plugin API {environment.get('plugin_api')}",
        f"- Python {environment.get('python')}, torch {environment.get('torch')}, "
        f"numpy {environment.get('numpy')}, {environment.get('platform')}",
        f"- Device: {environment.get('device')}"
        + (f" ({environment['gpu']})" if environment.get("gpu") else "")
        + f", torch threads: {environment.get('torch_threads')}",
        "- Plugins: " + ", ".join(f"{d} {v}" for d, v in environment.get("plugins", [])),
        "",
    ]
    if dataset:
        stats = dataset["statistics"]
        order = {key: i for i, key in enumerate(STATISTICS_ORDER)}
        keys = sorted(stats, key=lambda key: (order.get(key, len(order)), key))
        rows = [[key.replace("_", " "), _format_stat(stats[key])] for key in keys]
        lines += ["## Dataset", "", markdown_table(rows, ["statistic", "value"]), ""]
        prep = ", ".join(f"{k}={v}" for k, v in dataset.get("preprocessing", {}).items())
        lines += [f"Preprocessing: {escape(prep)}.", ""]

    options = config.get(OPTION_SECTION, {})
    test, valid = float(options.get("test", 0.2)), float(options.get("valid", 0.1))
    lines += ["## Protocol", ""]
    lines += [
        f"- Split: a seeded random split of the rating events: {test:.0%} test; "
        f"{valid:.0%} of the rest for validation (early stopping and model selection "
        "only); training the rest. Seeds "
        + ", ".join(map(str, seeds))
        + " (each seed re-splits and re-trains).",
    ]
    if ok:
        split, scale = ok[0]["split"], ok[0]["scale"]
        scale_text = RatingScale(scale["method"], scale["low"], scale["high"]).describe()
        lines += [
            f"- Ratings: {split['train_events']:,} training, {split['valid_events']:,} "
            f"validation, {split['test_events']:,} test (seed {ok[0]['seed']}).",
            f"- Scale: {scale_text}; an error in stars is the scaled error × "
            f"{scale['stars_per_unit']:g}.",
        ]
    lines += [
        "- Predictions are "
        + ("clipped to [0, 1]" if options.get("clip", True) else "not clipped")
        + " before the metrics.",
        "- History (models that read one): the user's training events before the predicted "
        "event, in time order (timestamp, then file order); held-out ratings never enter it.",
        "- Metrics per test event: rmse from squared errors (square root of the mean), mae "
        "from absolute errors (mean); ↓ lower is better.",
        "- Uncertainty: ± is the 95% confidence half-width — over test events (normal "
        "approximation; the delta method for rmse) for one seed, over seeds (Student t) for "
        "several.",
        "",
    ]

    lines += ["## Results: rating", ""]
    if ok:
        lines += [
            f"{ok[0]['n_queries']:,} test ratings from {ok[0]['n_users']:,} users.",
            "",
        ]
    best: dict[str, float] = {}
    for name in names:
        values = [aggregated[(m, name)][0] for m in models if (m, name) in aggregated]
        values = [v for v in values if not math.isnan(v)]
        if len(values) > 1:
            best[name] = max(values) if higher(name) else min(values)
    rows = []
    for model in models:
        if not any((model, n) in aggregated for n in names):
            continue
        row = [model]
        for name in names:
            if (model, name) not in aggregated:
                row.append("–")
                continue
            mean, ci = aggregated[(model, name)]
            text = f"{mean:.4f}"
            if name in best and mean == best[name]:
                text = f"**{text}**"
            if ci is not None and not math.isnan(ci):
                text += f" ± {ci:.4f}"
            row.append(text)
        rows.append(row)
    headers = ["model"] + [
        (n.removesuffix(STARS_SUFFIX) + " (stars)" if n.endswith(STARS_SUFFIX) else n)
        + (" ↑" if higher(n) else " ↓")
        for n in names
    ]
    lines += [markdown_table(rows, headers), ""]

    lines += ["## Timing", ""]
    timing_rows = []
    for model in models:
        group = grouped.get(model, [])
        if not group:
            continue
        fit = np.mean([g["timing"]["fit_seconds"] for g in group])
        ev = np.mean([g["timing"]["eval_seconds"] for g in group])
        rate = np.mean([g["timing"]["queries_per_second"] for g in group])
        timing_rows.append([model, f"{fit:.2f}", f"{ev:.2f}", f"{rate:,.0f}"])
    lines += [
        markdown_table(timing_rows, ["model", "fit s", "evaluation s", "ratings/s"]),
        "",
        "Times are means over seeds. Rating models have no one-step cell: no latency is measured.",
        "",
    ]
    if failed:
        lines += ["## Failures", ""]
        rows = [[c["model_label"], c["seed"], c.get("error", "")] for c in failed]
        lines += [markdown_table(rows, ["model", "seed", "reason"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _metric_rank(name: str) -> tuple[int, str]:
    """rmse, then mae, then the others by name."""
    base = name.removesuffix(STARS_SUFFIX)
    return ({"rmse": 0, "mae": 1}.get(base, 2), name)


def summary_table(frame: Any, model_labels: Sequence[str]) -> Any:
    """A console table of a rating run's results (``frame``: the ok rows of
    :meth:`recbench.api.RunResult.to_dataframe`): each model's metrics, means over seeds."""
    from rich.markup import escape
    from rich.table import Table

    names = sorted(dict.fromkeys(frame["metric"]), key=_metric_rank)
    names = [n for n in names if not n.endswith(STARS_SUFFIX)] + [
        n for n in names if n.endswith(STARS_SUFFIX)
    ]
    means = frame.groupby(["model", "metric"], sort=False)["mean"].mean()
    order = {label: i for i, label in enumerate(model_labels)}
    table = Table(title=f"{frame['dataset'].iloc[0]} — rating prediction, mean over seeds")
    for column in ("model", *names):
        table.add_column(column)
    for model in sorted(dict.fromkeys(frame["model"]), key=lambda m: (order.get(m, len(order)), m)):
        values = (f"{means.get((model, n), float('nan')):.4f}" for n in names)
        table.add_row(escape(model), *values)  # labels of sweeps hold brackets
    return table


def _rating_summary(
    models: Sequence[str],
    names: Sequence[str],
    aggregated: Mapping[tuple[str, str], tuple[float, float | None]],
    higher: Any,
    config: Mapping[str, Any],
    n_seeds: int,
) -> str:
    if not aggregated or not names:
        return "No model finished: see Failures below."
    name = "rmse" if "rmse" in names else names[0]
    scored = sorted(
        ((aggregated[(m, name)], m) for m in models if (m, name) in aggregated),
        key=lambda item: item[0][0],
        reverse=higher(name),
    )
    stars = name + STARS_SUFFIX
    (best_mean, best_ci), best = scored[0]

    def value(model: str, mean: float) -> str:
        text = f"{name} {mean:.4f}"
        if (model, stars) in aggregated:
            text += f" ({aggregated[(model, stars)][0]:.3f} stars)"
        return text

    sentence = f"{best} predicts ratings best: {value(best, best_mean)}"
    baselines = [m for m in models if config["models"].get(m, {}).get("baseline")]
    reference = next((s for s in scored if s[1] in baselines and s[1] != best), None)
    if reference is None and len(scored) > 1:
        reference = scored[1]
    if reference is not None:
        (other_mean, other_ci), other = reference
        separated = (
            best_ci is not None
            and other_ci is not None
            and abs(best_mean - other_mean) > best_ci + other_ci
        )
        sentence += f", against {value(other, other_mean)} for {other}; the 95% intervals " + (
            "do not overlap" if separated else "overlap"
        )
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return sentence + f". Results over {seeds}; details and policies below."
