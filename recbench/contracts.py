"""What each kind of plugin must provide.

A plugin registers *classes*. Every class carries the same metadata:

``id``
    Lower-case identifier used on the command line (``lstm``, ``ml-100k``, ``recall``).
``summary``
    One line saying what it is.
``version``
    A string that changes whenever results would change; it enters result cache keys.
``Options``
    A dataclass of options with defaults; unknown keys are rejected
    (:func:`recbench.config.options.parse_options`).
``aliases`` (optional)
    Other ids that select it (``ml100k`` for ``ml-100k``).
``search_space`` (optional; models)
    What tuning may try of its options (:mod:`recbench.config.search_space`).
``task`` (optional; models and metrics)
    ``"ranking"`` (the default) or ``"rating"`` for the rating track
    (:mod:`recbench.tasks.rating.evaluation`): a rating model has ``predict`` instead of ``score``
    (:class:`RatingModel`), a rating metric reads predicted and actual ratings
    (:class:`RatingMetric`).

and is constructed as ``cls(options)``. The kind-specific methods are the Protocols below;
the registry checks them at registration time, and reads the optional attributes of
:data:`OPTIONAL_ATTRIBUTES` once, there (a class without one gets its default), so the
rest of the core reads them from the registration record
(:class:`recbench.registry.PluginInfo`), never from the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from recbench.data.batches import RatingBatch, SequenceBatch
from recbench.data.interactions import Interactions, Sequences
from recbench.data.prepare import DataContext
from recbench.progress import Progress

if TYPE_CHECKING:
    from recbench.data.protocols import Queries
    from recbench.data.ratings import RatingEvents
    from recbench.ranking import Ranking

KINDS = ("model", "loss", "dataset", "metric")
#: What a model or metric is for: ranking items (the default, when a class declares no
#: ``task``) or predicting ratings (``task = "rating"``, the rating track).
TASKS = ("ranking", "rating")
#: The kinds of plugin that serve a task.
TASK_KINDS = ("model", "metric")


#: What a loss's ``candidates`` may say it receives as ``negative``.
LOSS_CANDIDATES = ("sampled", "all")
#: What a loss may ask the trainer for besides the scores (``extra_inputs``, see :class:`Loss`).
LOSS_INPUTS = ("candidate_ids", "sampling_probabilities")
#: How the per-event values of a rating metric may be aggregated (``aggregation``).
AGGREGATIONS = ("mean", "root_mean")

#: kind -> the optional class attributes of that kind and their defaults. ``aliases``:
#: other ids; ``task``: see :data:`TASKS`; ``baseline``: a simple reference model (the
#: report compares every model with the best baseline); ``search_space``: what tuning
#: may try of a model's options (:mod:`recbench.config.search_space`; ``None``: none
#: declared, the model cannot be tuned); ``candidates``: what a loss
#: receives as negatives and ``extra_inputs`` what else it asks for (:class:`Loss`);
#: ``argument_option``: the option that
#: ``--dataset id:ARG`` sets (:class:`Dataset`); ``aggregation`` and ``rating_units``: of
#: a rating metric (:class:`RatingMetric`); ``headline``: a metric's rank among the
#: report's headline metrics (summary, console table, curves; ``None``: not one) and
#: ``count``: its values are counts, shown without decimals (:class:`Metric`).
OPTIONAL_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "model": {"aliases": (), "task": "ranking", "baseline": False, "search_space": None},
    "loss": {"aliases": (), "candidates": "sampled", "extra_inputs": ()},
    "dataset": {"aliases": (), "argument_option": None},
    "metric": {
        "aliases": (),
        "task": "ranking",
        "aggregation": "mean",
        "rating_units": True,
        "headline": None,
        "count": False,
    },
}


def task_of(cls: Any) -> str:
    """The task of a model or metric class: its ``task`` attribute, ``"ranking"`` when
    it declares none."""
    return str(getattr(cls, "task", OPTIONAL_ATTRIBUTES["model"]["task"]))


class PluginLookup(Protocol):
    """Looks up a registered plugin by kind and id (the run's plugin registry)."""

    def get(self, kind: str, name: str) -> Any: ...


@dataclass
class FitContext:
    """What a model may use while training.

    ``validate(model)`` evaluates the model on the validation queries and returns the
    model-selection metric (higher is better); it is ``None`` when there is no validation
    set. The test set is never reachable from here. ``registry`` is the run's plugin
    registry (models look up losses there; the shared trainer refuses to train without one).
    ``checkpoint_dir`` is where a model may keep checkpoints (weights only); ``None``:
    keep them in memory.
    """

    n_items: int
    device: torch.device
    seed: int
    item_counts: np.ndarray
    progress: Progress = field(default_factory=Progress.silent)
    validate: Callable[[Any], float] | None = None
    validation_metric: str = ""
    registry: PluginLookup | None = None
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class MetricContext:
    """Dataset facts a metric may need: ``item_counts`` is training events per item id
    (``[n_items + 1]``), ``n_users`` the number of distinct users among the queries."""

    n_items: int
    item_counts: torch.Tensor
    n_users: int


@runtime_checkable
class Dataset(Protocol):
    """A source of interactions.

    ``argument_option`` names the option that ``--dataset id:ARG`` sets (``file:PATH``
    sets ``path``); ``None`` when the dataset takes no argument.
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]

    def fingerprint(self, ctx: DataContext) -> str:
        """A string that changes whenever the loaded interactions would (checksums,
        generator parameters, file size and time): part of the cache key."""
        ...

    def load(self, ctx: DataContext) -> Interactions:
        """Read (downloading if needed) and return the raw interactions."""
        ...


@runtime_checkable
class Model(Protocol):
    """A recommender: trained on sequences, scores every item for a batch of inputs.

    ``max_length`` is the longest input it reads (``None``: the whole prefix); longer
    inputs are cut to their most recent items by the evaluator.

    A model that keeps state may also define the optional one-pass method (the
    evaluator then answers the queries of a batch of users in one pass over their
    sequences instead of one ``score`` per query)::

        def score_prefixes(
            self, items: Tensor, lengths: Tensor, steps: int, rows: Tensor | None = None
        ) -> Iterator[Tensor]

    - ``items``: int64 ``[B, T]`` on the model's device, right-padded with 0: row ``b`` holds
      a user's chronological sequence ``items[b, :lengths[b]]`` (``T = lengths.max()``);
    - ``lengths``: int64 ``[B]``, each at least 1;
    - ``steps``: the chunk length in time (at least 1), chosen by the evaluator so that
      ``B * steps * (n_items + 1)`` scores fit its memory budget;
    - ``rows``: bool ``[B, T]`` on the model's device, the rows the evaluator will read
      (``None``: all). A model should score only those (other rows may hold anything;
      :func:`recbench.plugin.scores_of_rows` does it): under the last-item and half-split
      protocols one prefix per user answers a query, and scoring every item after every
      prefix would cost as much as the iterative protocol.

    It yields, for ``t0 = 0, steps, 2 * steps, ... < T``, a float tensor
    ``[B, w, n_items + 1]`` (``w = min(steps, T - t0)``) whose row ``[b, j]`` is the scores
    of every item after reading ``items[b, :t0 + j + 1]``, with serving semantics: the
    model carries its whole history (as its ScoringCell does when stepped from
    ``initial_state``), not a window of the last ``max_length`` items. Rows at or past
    ``lengths[b]`` are ignored. The model keeps its state between yields, so memory stays
    bounded by one chunk. Called under ``torch.no_grad()`` in eval mode; must equal stepping
    the cell, and ``score()`` for prefixes of at most ``max_length`` items.
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]

    @property
    def max_length(self) -> int | None: ...

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        """Train on ``train``; ``valid`` (validation queries) is for model selection only."""
        ...

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        """Scores ``[B, n_items + 1]`` (float, on the model's device); column 0 is
        padding and is ignored."""
        ...


#: The optional one-pass method of a ranking model (see :class:`Model`); the registry
#: records a model that defines it with ``has_score_prefixes``.
SCORE_PREFIXES = "score_prefixes"


@runtime_checkable
class Metric(Protocol):
    """An accuracy or beyond-accuracy measure at a cutoff ``k``.

    With ``per_query = True`` it returns one value per query (a float64 tensor ``[Q]``)
    and the core aggregates (mean, 95% CI) and keeps the array for paired tests; with
    ``per_query = False`` it returns one number for the whole query set (a 0-d tensor).
    ``bounds`` are the documented (low, high) limits of a value (``high`` may be None).
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]
    per_query: ClassVar[bool]
    higher_is_better: ClassVar[bool]
    bounds: ClassVar[tuple[float, float | None]]

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor: ...


@runtime_checkable
class Loss(Protocol):
    """A training loss: ``loss(positive [..], negative [.., N], mask [..] | None) -> []``.

    ``positive`` holds the score of the item that came next for each prediction,
    ``negative`` the scores of ``N`` items that did not; ``mask`` (bool or float weights)
    selects the predictions that count, and the result is their weighted mean. An
    optional class attribute ``candidates`` says what the trainer passes as ``negative``:
    ``"sampled"`` (the default: sampled negatives) or ``"all"`` (the scores of every item,
    ``N = n_items``, the positive's own column included -- for a full softmax).

    An optional class attribute ``extra_inputs`` (a tuple of names, default empty) asks
    the trainer for more, passed as keyword arguments of the same ``[.., N]`` shape as
    ``negative``: ``"candidate_ids"`` (int64, the item id of each ``negative`` column)
    and ``"sampling_probabilities"`` (float32, the probability with which the sampler
    draws that item; for in-batch negatives the item's share of the training events;
    1 with ``candidates = "all"``), e.g. for a log-Q corrected sampled softmax that
    subtracts ``log(sampling_probabilities)`` from ``negative``. A loss that asks for
    nothing gets no keyword argument.
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]

    def __call__(
        self, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


@dataclass
class RatingFitContext:
    """What a rating model may use while training.

    ``validate(model)`` predicts the validation events and returns their RMSE on the
    [0, 1] scale (**lower** is better); it is ``None`` when there is no validation share.
    ``mean_rating`` is the mean scaled training rating. The test events are never
    reachable from here.
    """

    n_users: int
    n_items: int
    device: torch.device
    seed: int
    mean_rating: float
    progress: Progress = field(default_factory=Progress.silent)
    validate: Callable[[Any], float] | None = None
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class RatingMetricContext:
    """What a rating metric may use besides the predictions: the events' ``users`` and
    ``items`` (int64 ``[N]``, aligned with the predictions) and ``n_items``."""

    users: torch.Tensor
    items: torch.Tensor
    n_items: int


@runtime_checkable
class RatingModel(Protocol):
    """A rating predictor (``task = "rating"``): trained on rating events, predicts the
    scaled rating of a batch of (user, item, history) events.

    ``max_history`` (optional, default 0) is the number of most recent earlier training
    events of the user it reads per event (``None``: all of them; 0: none).
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]
    task: ClassVar[str]

    def fit(self, train: RatingEvents, valid: RatingEvents | None, ctx: RatingFitContext) -> None:
        """Train on ``train``; ``valid`` (the validation share) is for model selection."""
        ...

    def predict(self, batch: RatingBatch) -> torch.Tensor:
        """Predicted ratings ``[B]`` on the [0, 1] scale (float, on the model's device)."""
        ...


@runtime_checkable
class RatingMetric(Protocol):
    """An error measure of predicted ratings (``task = "rating"``).

    ``metric(predicted [N], actual [N], ctx)`` (float64, on the [0, 1] scale) returns one
    value per event (``per_query = True``, a tensor ``[N]``) or one for the whole set (a
    0-d tensor). ``aggregation`` (optional, default ``"mean"``) says how the core turns
    per-event values into the reported value: ``"mean"``, or ``"root_mean"`` (the square
    root of the mean, for RMSE from per-event squared errors). ``rating_units`` (optional,
    default True) says the value is in units of the rating, so that the core also reports
    it in stars (multiplied by the width of the star scale).
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]
    task: ClassVar[str]
    per_query: ClassVar[bool]
    higher_is_better: ClassVar[bool]
    bounds: ClassVar[tuple[float, float | None]]

    def __call__(
        self, predicted: torch.Tensor, actual: torch.Tensor, ctx: RatingMetricContext
    ) -> torch.Tensor: ...


#: kind -> (Protocol, methods the class must define)
REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "model": ("fit", "score"),
    "loss": ("__call__",),
    "dataset": ("load", "fingerprint"),
    "metric": ("__call__",),
}
REQUIRED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "model": (),
    "loss": (),
    "dataset": (),
    "metric": ("per_query", "higher_is_better", "bounds"),
}
#: (kind, task) -> the methods a class of that task must define, where they differ from
#: REQUIRED_METHODS (which holds those of the ranking task).
TASK_REQUIRED_METHODS: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "rating"): ("fit", "predict"),
}


def required_methods(kind: str, task: str = "ranking") -> tuple[str, ...]:
    """The methods a ``kind`` plugin serving ``task`` must define."""
    return TASK_REQUIRED_METHODS.get((kind, task), REQUIRED_METHODS[kind])
