"""The order check: does the order of the items in a sequence matter on this dataset?

A sequence model is trained and evaluated a second time on the first seed's split with
every user's items shuffled (train, validation and test alike; seeded): the model can
then learn co-occurrence but not order. If it does as well shuffled as in order, the
dataset's sequential signal is not what the sequence models exploit -- on MovieLens,
where many events share a timestamp and the within-timestamp order comes from the file,
this is worth knowing before reading the results as evidence about sequence modelling.

The runner picks the model (``--order-check``: ``auto`` = the first model of the run
that has a one-step ``cell()``, i.e. a sequence model; a model label; or ``off``) and
writes its cells with ``"ablation": "order-shuffled"``; :func:`order_verdict` compares
them with the model's in-order cells of the same seed (the report's "Order check").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recbench.errors import ConfigError, close_matches
from recbench.interactions import Sequences
from recbench.splits import Split

ORDER_SHUFFLED = "order-shuffled"
AUTO = "auto"
OFF = "off"


def shuffle_order(sequences: Sequences, seed: int) -> Sequences:
    """``sequences`` with the items of every row permuted at random (seeded).

    Timestamps stay with the positions (the shuffled sequence keeps the original
    rhythm); ratings move with their items.
    """
    lengths = sequences.lengths
    start = int(sequences.offsets[0])
    end = int(sequences.offsets[-1])
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), lengths)
    keys = np.random.default_rng(seed).random(end - start)
    order = np.lexsort((keys, rows)) + start
    return replace(
        sequences,
        offsets=sequences.offsets - start,
        items=sequences.items[order],
        timestamps=None if sequences.timestamps is None else sequences.timestamps[start:end],
        ratings=None if sequences.ratings is None else sequences.ratings[order],
    )


def shuffled_split(split: Split, seed: int) -> Split:
    """The same users as ``split``, every sequence shuffled (:func:`shuffle_order`)."""
    return replace(
        split,
        train=shuffle_order(split.train, seed),
        valid=shuffle_order(split.valid, seed + 1),
        test=shuffle_order(split.test, seed + 2),
    )


def choose_model(
    requested: str, labels: Sequence[str], sequence_labels: Sequence[str]
) -> str | None:
    """The label of the model to check: ``requested`` is ``auto`` (the first sequence
    model, ``None`` when there is none), ``off`` (``None``) or a label of the run."""
    if requested == OFF:
        return None
    if requested == AUTO:
        return sequence_labels[0] if sequence_labels else None
    if requested not in labels:
        raise ConfigError(
            f"the order check names '{requested}', which is not a model of this run",
            where="--order-check",
            hint=close_matches(requested, [*labels, AUTO, OFF]),
        )
    return requested


@dataclass(frozen=True)
class OrderVerdict:
    """In-order against shuffled for one metric: the two means, Welch's t-test p-value
    (queries of the two runs are different queries, so the test is unpaired), and the
    conclusion in words."""

    metric: str
    in_order: float
    shuffled: float
    p_value: float
    conclusion: str


def order_verdict(
    metric: str, in_order: np.ndarray, shuffled: np.ndarray, alpha: float = 0.05
) -> OrderVerdict:
    """Compare per-query values of ``metric`` (higher is better) in order and shuffled."""
    from scipy import stats

    a = np.asarray(in_order, dtype=np.float64)
    b = np.asarray(shuffled, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        p = 1.0 if a.mean() == b.mean() else 0.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    p = 1.0 if math.isnan(p) else p
    if p >= alpha:
        conclusion = "no evidence that order matters: shuffled sequences do as well"
    elif a.mean() > b.mean():
        conclusion = "order matters: shuffling the sequences loses accuracy"
    else:
        conclusion = "shuffled sequences do better: the order carries no signal this model uses"
    return OrderVerdict(metric, float(a.mean()), float(b.mean()), p, conclusion)


def is_ablation(cell: dict[str, Any]) -> bool:
    """Whether a result cell belongs to an ablation rather than to the benchmark."""
    return bool(cell.get("ablation"))
