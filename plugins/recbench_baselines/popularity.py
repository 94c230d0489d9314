"""Popularity: the most frequent training items, the same ranking for every input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recbench.plugin import FitContext, Queries, SequenceBatch, Sequences


class Popularity:
    """Scores each item by its number of training events.

    The simplest non-personalised baseline, and a strong one on MovieLens under
    seen-item exclusion. Ties between equally popular items are left to the evaluator's
    tie policy (pessimistic by default), so no arbitrary order favours the target.
    """

    id = "pop"
    baseline = True  # compared against in the report's significance marks
    summary = "Training-set popularity: the most frequent items, the same list for everyone"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        pass

    search_space: ClassVar[
        dict[str, Any]
    ] = {}  # no option: nothing to tune (tuning gives it the same budget)

    def __init__(self, options: Options | None = None):
        self.options = options or self.Options()
        self._scores: torch.Tensor | None = None

    @property
    def max_length(self) -> int | None:
        return 1  # the input is not used; keep the evaluator's gather minimal

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        counts = torch.as_tensor(train.item_counts(), dtype=torch.float32)
        self._scores = counts.to(ctx.device)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        if self._scores is None:
            raise RuntimeError("Popularity.score() called before fit()")
        return self._scores.unsqueeze(0).expand(batch.items.shape[0], -1)
