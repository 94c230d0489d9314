"""Item-kNN: items that co-occur with the most recent item(s) in training sequences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recbench.plugin import (
    Choice,
    FitContext,
    FloatRange,
    IntRange,
    Queries,
    SequenceBatch,
    Sequences,
)
from recbench_baselines.sparse_scoring import (
    DECAYS,
    Decay,
    batch_arrays,
    decay_by_distance,
    empty_check,
    item_sets,
    scores_tensor,
    top_per_row,
)

#: Similarity entries computed at once while fitting (bounds the memory of a block of
#: the item x item co-occurrence matrix).
BLOCK_ENTRIES = 1 << 24


@dataclass(frozen=True)
class ItemKNNOptions:
    """Options of ``itemknn`` (defaults of Hidasi et al. 2016's item-kNN baseline).

    neighbors:
        Similar items kept per item (``n_sims``); the others score 0. Keep it at least
        the largest cutoff.
    regularization:
        ``λ`` added to both supports: damps the similarity of rarely seen items
        (coincidental co-occurrences).
    alpha:
        Balance of the two supports in the denominator: 0.5 is cosine similarity,
        1 is the confidence of the rule i -> j; above 0.5 damps popular candidates less.
    steps:
        How many of the most recent input items score (1: only the last item, as in
        the published baseline).
    step_weighting:
        Weight of the item ``d`` steps back (d = 1 is the last item) when ``steps > 1``:
        ``same``, ``div`` (1/d), ``linear``, ``log`` or ``quadratic``.
    """

    neighbors: int = 100
    regularization: float = 20.0
    alpha: float = 0.5
    steps: int = 1
    step_weighting: Decay = "div"

    def __post_init__(self) -> None:
        if self.neighbors < 1:
            raise ValueError("neighbors must be at least 1")
        if self.regularization < 0:
            raise ValueError("regularization must not be negative")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie between 0 and 1")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")


class ItemKNN:
    """Item-to-item nearest neighbours scored from the most recent input item.

    With ``S`` the set of training sequences and ``supp(i) = |{s ∈ S : i ∈ s}|``, the
    similarity of items ``i != j`` is

    .. math::

        sim(i, j) = \\frac{|\\{s ∈ S : i ∈ s, j ∈ s\\}|}
                         {(supp(i) + λ)^{α} \\, (supp(j) + λ)^{1 - α}}

    and only the ``neighbors`` most similar items of each item are kept (ties: the
    smaller item id). The score of item ``j`` for an input ``x_1 .. x_n`` is
    ``sim(x_n, j)``; with ``steps = m > 1`` it is ``Σ_{d=1..m} w(d) · sim(x_{n-d+1}, j)``
    with ``w`` the ``step_weighting`` decay. An item never scores from itself.

    Co-occurrence and support count sequences (binary item sets), as the published
    definition says; the reference code counts events, which is the same on data
    without repeated items.

    Fitting computes the co-occurrence matrix in blocks of items with sparse products
    and keeps only the top ``neighbors`` per item, so memory stays ``O(n_items ·
    neighbors)``; scoring a batch is one sparse row gather (or a sparse product).

    References
    ----------
    B. Hidasi, A. Karatzoglou, L. Baltrunas, D. Tikk. "Session-based Recommendations
    with Recurrent Neural Networks". ICLR 2016 (the item-kNN baseline; n_sims=100,
    λ=20, α=0.5).
    M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms".
    User Modeling and User-Adapted Interaction 28(4-5), 2018 (IKNN).
    """

    id = "itemknn"
    baseline = True  # compared against in the report's significance marks
    summary = "Item-kNN: cosine co-occurrence neighbours of the last item (Hidasi et al. 2016)"
    version = "1"
    Options = ItemKNNOptions
    search_space: ClassVar[dict[str, Any]] = {
        "neighbors": IntRange(20, 1000, log=True),
        "regularization": FloatRange(0.0, 100.0),
        "alpha": FloatRange(0.0, 1.0),
        "steps": IntRange(1, 5),
        "step_weighting": Choice(DECAYS, when={"steps": (2, 3, 4, 5)}),
    }

    def __init__(self, options: ItemKNNOptions | None = None):
        self.options = options or ItemKNNOptions()
        self._similarity: sp.csr_matrix | None = None
        self._device = torch.device("cpu")

    @property
    def max_length(self) -> int | None:
        return self.options.steps

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        self._device = ctx.device
        self._similarity = item_similarities(
            item_sets(train),
            neighbors=self.options.neighbors,
            regularization=self.options.regularization,
            alpha=self.options.alpha,
        )

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        empty_check("ItemKNN", self._similarity)
        assert self._similarity is not None
        items, _ = batch_arrays(batch)
        if self.options.steps == 1:
            return scores_tensor(self._similarity[items[:, -1]], self._device)
        return scores_tensor(
            decayed_input(items, self.options.step_weighting, self._similarity.shape[0])
            @ self._similarity,
            self._device,
        )


def item_similarities(
    incidence: sp.csr_matrix, *, neighbors: int, regularization: float, alpha: float
) -> sp.csr_matrix:
    """The pruned item x item similarity matrix ``[n_items + 1, n_items + 1]`` (float32
    CSR) of :class:`ItemKNN`, from the binary sequence x item ``incidence``."""
    n_columns = incidence.shape[1]
    by_item = incidence.T.tocsr()
    support = np.asarray(incidence.sum(axis=0), dtype=np.float64).ravel()
    own = np.power(support + regularization, alpha)
    other = np.power(support + regularization, 1.0 - alpha)
    own[own == 0] = 1.0
    other[other == 0] = 1.0
    block = max(1, BLOCK_ENTRIES // max(n_columns, 1))
    parts = []
    for first in range(0, n_columns, block):
        rows = np.arange(first, min(first + block, n_columns))
        co_occurrence = (by_item[rows] @ incidence).tocoo()
        keep = co_occurrence.row + first != co_occurrence.col  # no self-similarity
        row, col = co_occurrence.row[keep], co_occurrence.col[keep]
        value = co_occurrence.data[keep] / (own[row + first] * other[col])
        parts.append(
            top_per_row(sp.csr_matrix((value, (row, col)), shape=(len(rows), n_columns)), neighbors)
        )
    similarity = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, n_columns))
    return similarity.astype(np.float32)


def decayed_input(items: np.ndarray, decay: str, n_columns: int) -> sp.csr_matrix:
    """``[B, n_columns]`` weights of the input items ``items`` (``[B, L]``, left-padded):
    the item ``d`` steps back from the last weighs ``decay(d)``; repeated items add up."""
    n_rows, width = items.shape
    distance = np.broadcast_to(np.arange(width, 0, -1, dtype=np.int64), items.shape)
    present = items > 0
    weights = decay_by_distance(decay, distance[present])
    rows = np.broadcast_to(np.arange(n_rows)[:, None], items.shape)[present]
    return sp.csr_matrix((weights, (rows, items[present])), shape=(n_rows, n_columns))
