"""First-order Markov chain: the items that followed the last item in training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recbench.plugin import Choice, FitContext, Queries, SequenceBatch, Sequences
from recbench_baselines.sparse_scoring import (
    empty_check,
    last_items,
    scores_tensor,
    top_per_row,
    transition_pairs,
)


@dataclass(frozen=True)
class MarkovOptions:
    """Options of ``markov``.

    pruning:
        Successors kept per item, the most frequent first (ties: the smaller item id);
        0 keeps all. 20 as in the reference implementation of Ludewig & Jannach.
    """

    pruning: int = 20

    def __post_init__(self) -> None:
        if self.pruning < 0:
            raise ValueError("pruning must be 0 (keep all) or a positive number of successors")


class Markov:
    """First-order transition probabilities from the last input item.

    With ``c(a, b)`` the number of times item ``b`` directly follows item ``a`` in a
    training sequence, the score of ``b`` for an input ending with ``a`` is the maximum
    likelihood transition probability ``P(b | a) = c(a, b) / Σ_b' c(a, b')``, kept for
    the ``pruning`` most frequent successors of ``a`` (0 elsewhere, and everywhere when
    ``a`` was never followed by anything).

    References
    ----------
    S. Rendle, C. Freudenthaler, L. Schmidt-Thieme. "Factorizing Personalized Markov
    Chains for Next-Basket Recommendation". WWW 2010 (the first-order Markov chain that
    FPMC factorises).
    M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms".
    User Modeling and User-Adapted Interaction 28(4-5), 2018 (the Markov baseline:
    sequential rules with steps=1).
    """

    id = "markov"
    baseline = True  # compared against in the report's significance marks
    summary = "First-order Markov chain: transition probabilities from the last item"
    version = "1"
    Options = MarkovOptions
    search_space: ClassVar[dict[str, Any]] = {"pruning": Choice((0, 5, 10, 20, 50, 100))}

    def __init__(self, options: MarkovOptions | None = None):
        self.options = options or MarkovOptions()
        self._transitions: sp.csr_matrix | None = None
        self._device = torch.device("cpu")

    @property
    def max_length(self) -> int | None:
        return 1

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        self._device = ctx.device
        n_columns = train.n_items + 1
        earlier, later = transition_pairs(train, 1)
        counts = sp.csr_matrix(
            (np.ones(len(earlier)), (earlier, later)), shape=(n_columns, n_columns)
        )
        outgoing = np.asarray(counts.sum(axis=1)).ravel()
        outgoing[outgoing == 0] = 1.0
        probabilities = sp.diags(1.0 / outgoing) @ counts
        self._transitions = top_per_row(probabilities.tocsr(), self.options.pruning).astype(
            np.float32
        )

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        empty_check("Markov", self._transitions)
        assert self._transitions is not None
        return scores_tensor(self._transitions[last_items(batch)], self._device)
