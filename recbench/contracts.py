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
    (:func:`recbench.options.parse_options`).
``aliases`` (optional)
    Other ids that select it (``ml100k`` for ``ml-100k``).

and is constructed as ``cls(options)``. The kind-specific methods are the Protocols below;
the registry checks them at registration time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from recbench.interactions import Interactions, Sequences
from recbench.progress import Progress

if TYPE_CHECKING:
    from recbench.protocols import Queries
    from recbench.ranking import Ranking
    from recbench.registry import Registry

KINDS = ("model", "loss", "dataset", "metric")


@dataclass(frozen=True)
class SequenceBatch:
    """Input sequences of a batch of queries, as a model receives them.

    ``items`` is ``[B, L]`` (int64, on the model's device), **left-padded** with 0 so that
    the most recent item is always in the last column; ``lengths`` is ``[B]``, the number
    of real items in each row (at least 1). ``L`` never exceeds the model's ``max_length``.
    """

    items: torch.Tensor
    lengths: torch.Tensor


@dataclass
class DataContext:
    """What a dataset plugin may use while loading.

    ``data_root`` holds raw files (``<data_root>/<dataset id>/...``) and may be read-only;
    downloads go to ``download_root`` (the same folder unless it is read-only).
    ``offline`` forbids network access. ``cache_root`` is for derived files.
    """

    data_root: Path
    download_root: Path
    cache_root: Path
    progress: Progress = field(default_factory=Progress.silent)
    offline: bool = False


@dataclass
class FitContext:
    """What a model may use while training.

    ``validate(model)`` evaluates the model on the validation queries and returns the
    model-selection metric (higher is better); it is ``None`` when there is no validation
    set. The test set is never reachable from here. ``registry`` is the run's plugin
    registry (models look up losses there; ``None``: the installed plugins).
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
    registry: Registry | None = None
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
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type]

    def __call__(
        self, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor | None = None
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
