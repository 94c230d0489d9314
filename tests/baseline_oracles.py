"""Straightforward per-query implementations of the neighbourhood and rule baselines.

They follow the published definitions (as documented in the plugin modules) with plain
Python sets and dicts, one query at a time, the way the reference implementation works.
The tests compare the fast batched models against them, and
``benchmarks/bench_neighborhood.py`` times them to report the speed-up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from recbench_baselines.sknn import SKNNOptions, VSKNNOptions
from recbench_baselines.sparse_scoring import decay_function

from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences


def sequences_as_lists(sequences: Sequences) -> list[list[int]]:
    return [[int(i) for i in sequences.sequence(row)] for row in range(len(sequences))]


def position_weight(kind: str, position: int, length: int) -> float:
    if kind == "same":
        return 1.0
    if kind == "div":
        return position / length
    if kind == "linear":
        return max(0.0, 1.0 - 0.1 * (length - position))
    if kind == "log":
        return 1.0 / math.log10(length - position + 1.7)
    if kind == "quadratic":
        return (position / length) ** 2
    raise ValueError(kind)


class OracleSessionKNN:
    """SKNN (``weighted=False``) and V-SKNN (``weighted=True``), one query at a time."""

    def __init__(self, *, weighted: bool, **options: Any):
        self.weighted = weighted
        # The model's defaults (they are settings, not part of the definition tested).
        options = {**asdict(VSKNNOptions() if weighted else SKNNOptions()), **options}
        self.k = options["k"]
        self.sample_size = options["sample_size"]
        self.similarity = options["similarity"]
        self.weighting = options.get("weighting", "div")
        self.weighting_score = options.get("weighting_score", "div")
        self.idf_weighting = options.get("idf_weighting", 0.0)
        self.max_length = options["max_length"]

    def fit(self, train: Sequences) -> None:
        lists = sequences_as_lists(train)
        self.n_items = train.n_items
        rows = [row for row, items in enumerate(lists) if items]
        if train.timestamps is not None:
            last = {row: int(train.timestamps[train.offsets[row + 1] - 1]) for row in rows}
        else:
            last = {row: row for row in rows}
        recency = sorted(rows, key=lambda row: (-last[row], -row))
        self.rank = {row: rank for rank, row in enumerate(recency)}  # 0 = most recent
        self.items_of = {row: set(lists[row]) for row in rows}
        self.sequences_of: dict[int, set[int]] = defaultdict(set)
        for row in rows:
            for item in lists[row]:
                self.sequences_of[item].add(row)
        counts = np.bincount(train.items, minlength=self.n_items + 1)
        self.idf = {
            item: math.log(len(rows) / counts[item])
            for item in range(1, self.n_items + 1)
            if counts[item] > 0
        }

    def score_one(self, query: list[int]) -> np.ndarray:
        if self.max_length is not None:
            query = query[-self.max_length :]
        query_set = set(query)
        candidates: set[int] = set()
        for item in query_set:
            candidates |= self.sequences_of.get(item, set())
        ordered = sorted(candidates, key=lambda row: self.rank[row])
        if self.sample_size > 0:
            ordered = ordered[: self.sample_size]
        weights = {}
        for position, item in enumerate(query, start=1):
            weights[item] = position_weight(self.weighting, position, len(query))
        neighbours = []
        for row in ordered:
            other = self.items_of[row]
            common = query_set & other
            if self.weighted:
                total = sum(weights[i] for i in common)
                if self.similarity == "vec":
                    similarity = total / len(query_set)
                else:
                    norm = math.sqrt(sum(w * w for w in weights.values()))
                    similarity = total / (norm * math.sqrt(len(other))) if norm > 0 else 0.0
            elif self.similarity == "jaccard":
                similarity = len(common) / len(query_set | other)
            else:
                similarity = len(common) / math.sqrt(len(query_set) * len(other))
            # compared at 12 decimals, as the model does (sums in another order stay tied)
            rounded = int(np.rint(similarity * 1e12))
            if rounded > 0:
                neighbours.append((row, rounded, similarity))
        neighbours.sort(key=lambda entry: (-entry[1], self.rank[entry[0]]))
        scores = np.zeros(self.n_items + 1)
        decay = decay_function(self.weighting_score)
        for row, _, similarity in neighbours[: self.k]:
            other = self.items_of[row]
            contribution = similarity
            if self.weighted:
                for distance, item in enumerate(reversed(query), start=1):
                    if item in other:
                        contribution = similarity * decay(distance)
                        break
            for item in other:
                gain = contribution
                if self.weighted and self.idf_weighting > 0:
                    gain = contribution * (1 + self.idf_weighting * self.idf[item])
                scores[item] += gain
        return scores


class OracleItemKNN:
    def __init__(self, **options: Any):
        self.neighbors = options.get("neighbors", 100)
        self.regularization = options.get("regularization", 20.0)
        self.alpha = options.get("alpha", 0.5)
        self.steps = options.get("steps", 1)
        self.step_weighting = options.get("step_weighting", "div")

    def fit(self, train: Sequences) -> None:
        self.n_items = train.n_items
        self.sets = [set(s) for s in sequences_as_lists(train)]
        self.support = defaultdict(int)
        for items in self.sets:
            for item in items:
                self.support[item] += 1

    def similar(self, item: int) -> dict[int, float]:
        together: dict[int, int] = defaultdict(int)
        for items in self.sets:
            if item in items:
                for other in items:
                    if other != item:
                        together[other] += 1
        similarity = {
            other: count
            / (
                (self.support[item] + self.regularization) ** self.alpha
                * (self.support[other] + self.regularization) ** (1 - self.alpha)
            )
            for other, count in together.items()
        }
        best = sorted(similarity.items(), key=lambda pair: (-pair[1], pair[0]))
        return dict(best[: self.neighbors])

    def score_one(self, query: list[int]) -> np.ndarray:
        scores = np.zeros(self.n_items + 1)
        decay = decay_function(self.step_weighting)
        for distance, item in enumerate(reversed(query[-self.steps :]), start=1):
            for other, similarity in self.similar(item).items():
                scores[other] += decay(distance) * similarity
        return scores


class OracleRules:
    """Sequential rules (``markov=False``) or the first-order Markov chain."""

    def __init__(self, *, markov: bool, **options: Any):
        self.markov = markov
        self.steps = 1 if markov else options.get("steps", 10)
        self.weighting = "same" if markov else options.get("weighting", "div")
        self.pruning = options.get("pruning", 20)

    def fit(self, train: Sequences) -> None:
        self.n_items = train.n_items
        decay = decay_function(self.weighting)
        rules: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for sequence in sequences_as_lists(train):
            for later in range(len(sequence)):
                for distance in range(1, self.steps + 1):
                    if later - distance < 0:
                        break
                    rules[sequence[later - distance]][sequence[later]] += decay(distance)
        self.rules = {}
        for antecedent, consequents in rules.items():
            total = sum(consequents.values())
            values = {
                item: (weight / total if self.markov else float(np.round(weight, 12)))
                for item, weight in consequents.items()
                if weight > 0
            }
            best = sorted(values.items(), key=lambda pair: (-pair[1], pair[0]))
            self.rules[antecedent] = dict(best[: self.pruning] if self.pruning else best)

    def score_one(self, query: list[int]) -> np.ndarray:
        scores = np.zeros(self.n_items + 1)
        for item, weight in self.rules.get(query[-1], {}).items():
            scores[item] = weight
        return scores


class PerQueryModel:
    """A recbench model around an oracle: ``score`` loops over the queries of a batch."""

    id = "oracle"
    summary = "per-query reference"
    version = "0"

    def __init__(self, oracle: Any, max_length: int | None):
        self.oracle = oracle
        self._max_length = max_length

    @property
    def max_length(self) -> int | None:
        return self._max_length

    def fit(self, train: Sequences, valid: Any, ctx: Any) -> None:
        self.oracle.fit(train)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        items = batch.items.cpu().numpy()
        lengths = batch.lengths.cpu().numpy()
        rows = [
            self.oracle.score_one([int(i) for i in row[len(row) - n :]])
            for row, n in zip(items, lengths, strict=True)
        ]
        return torch.from_numpy(np.stack(rows).astype(np.float32))
