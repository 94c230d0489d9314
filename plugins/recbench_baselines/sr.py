"""Sequential rules: item b follows item a within a few steps, weighted by the distance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recbench.plugin import Choice, FitContext, IntRange, Queries, SequenceBatch, Sequences
from recbench_baselines.sparse_scoring import (
    DECAYS,
    Decay,
    decay_by_distance,
    empty_check,
    last_items,
    scores_tensor,
    top_per_row,
    transition_pairs,
)


@dataclass(frozen=True)
class SequentialRulesOptions:
    """Options of ``sr`` (defaults of the reference implementation of Ludewig & Jannach).

    steps:
        The largest distance between the two items of a rule (1: adjacent items only).
    weighting:
        Weight of a pair ``d`` steps apart: ``div`` (1/d), ``same``, ``linear``
        (max(0, 1 - 0.1 d)), ``log`` (1/log10(d + 1.7)) or ``quadratic`` (1/d²).
    pruning:
        Rules kept per antecedent item, the strongest first (weights compared at 12
        decimals; ties: the smaller item id); 0 keeps every rule.
    """

    steps: int = 10
    weighting: Decay = "div"
    pruning: int = 20

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.pruning < 0:
            raise ValueError("pruning must be 0 (keep all) or a positive number of rules")


class SequentialRules:
    """Sequential association rules a -> b scored from the last input item.

    For every training sequence ``s`` and positions ``p < q`` with ``q - p <= steps``
    the rule ``s_p -> s_q`` gains ``w(q - p)`` (``w`` is the ``weighting`` decay);
    repeated items and self-rules count like any other pair. Each antecedent keeps its
    ``pruning`` strongest rules. The score of item ``b`` for an input ending with item
    ``a`` is the weight of ``a -> b`` (0 without a rule).

    Fitting is one vectorised pass per distance (at most ``steps`` passes) summing
    pairs into a sparse item x item matrix; scoring is a sparse row gather.

    References
    ----------
    I. Kamehkhosh, D. Jannach, M. Ludewig. "A Comparison of Frequent Pattern Techniques
    and a Deep Learning Method for Session-Based Recommendation". TempRec workshop at
    ACM RecSys 2017.
    M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms".
    User Modeling and User-Adapted Interaction 28(4-5), 2018 (SR; steps=10,
    weighting=div, pruning=20 in the reference implementation).
    """

    id = "sr"
    baseline = True  # compared against in the report's significance marks
    summary = (
        "Sequential rules: distance-weighted a -> b rules of the last item (Ludewig & Jannach)"
    )
    version = "1"
    Options = SequentialRulesOptions
    search_space: ClassVar[dict[str, Any]] = {
        "steps": IntRange(1, 20),
        "weighting": Choice(DECAYS),
        "pruning": Choice((0, 10, 20, 50)),
    }

    def __init__(self, options: SequentialRulesOptions | None = None):
        self.options = options or SequentialRulesOptions()
        self._rules: sp.csr_matrix | None = None
        self._device = torch.device("cpu")

    @property
    def max_length(self) -> int | None:
        return 1

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        self._device = ctx.device
        n_columns = train.n_items + 1
        rules = sp.csr_matrix((n_columns, n_columns), dtype=np.float64)
        for distance in range(1, self.options.steps + 1):
            earlier, later = transition_pairs(train, distance)
            if len(earlier) == 0:
                break
            weight = decay_by_distance(self.options.weighting, np.array([distance]))[0]
            if weight == 0:
                continue
            rules = rules + sp.csr_matrix(
                (np.full(len(earlier), weight), (earlier, later)), shape=(n_columns, n_columns)
            )
        # Weights summed in another order can differ in the last bits: compare them at
        # 12 decimals so that equal rules tie (and the smaller item id wins) everywhere.
        rules.data = np.round(rules.data, 12)
        self._rules = top_per_row(rules, self.options.pruning).astype(np.float32)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        empty_check("SequentialRules", self._rules)
        assert self._rules is not None
        return scores_tensor(self._rules[last_items(batch)], self._device)
