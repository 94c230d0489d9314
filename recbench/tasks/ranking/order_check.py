"""The order check: does the order of the items in a sequence matter on this dataset?

On the first seed's split a sequence model is trained a second time on the training
users' sequences with every user's items shuffled (seeded), and evaluated on **the same
test queries** as the benchmark with each query's input items shuffled
(:class:`ShuffledInputs`). The targets do not change -- the next item is still the next
item -- so the two evaluations are paired query by query, and the only difference is the
order of what the model reads and learned from. If the model does as well without order,
the dataset's sequential signal is not what the sequence models exploit -- on MovieLens,
where many events share a timestamp and the within-timestamp order comes from the file,
this is worth knowing before reading the results as evidence about sequence modelling.

(Shuffling the test sequences themselves would also change the targets -- a random item
of the history instead of the latest -- and so mix a change of task into the comparison.)

Each shuffled prefix is a new input, so the shuffled model answers its queries one by
one, never in the one pass over a user's history that serves the in-order model. On a
large dataset it therefore reads the queries of a seeded sample of test users
(``eval.order_check_users``, :func:`sample_users`); its cells keep the positions of those
queries among the benchmark's (:data:`QUERY_INDEX`), and the comparison pairs them with
the in-order answers to the same queries (:func:`paired_values`).

The runner picks the model (``--order-check``: ``auto`` = the first model of the run
that has a one-step ``cell()``, i.e. a sequence model; a model label; or ``off``) and
writes its cells with ``"ablation": "order-shuffled"``; :func:`order_verdict` compares
them with the model's in-order cells of the same seed on every metric the report shows,
Holm-corrected across those metrics (the report's "Order check").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences
from recbench.data.protocols import Queries
from recbench.data.splits import Split
from recbench.errors import ConfigError, close_matches
from recbench.stats import significance

ORDER_SHUFFLED = "order-shuffled"
#: Enters the cells' keys: version 2 keeps the test queries and shuffles their inputs.
VERSION = "2"
#: The per-query array of a shuffled cell that holds the positions of its queries among
#: the benchmark's queries of the same protocol (absent: all of them, in order).
QUERY_INDEX = "query_index"
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


def shuffled_training(split: Split, seed: int) -> Split:
    """``split`` with the training users' sequences shuffled (:func:`shuffle_order`); the
    validation and test users are left as they are (their queries' inputs are shuffled
    at scoring time by :class:`ShuffledInputs`)."""
    return replace(split, train=shuffle_order(split.train, seed))


class ShuffledInputs:
    """A trained model whose every input is read in a random order.

    ``score(batch)`` permutes the real items of each row of the left-padded ``batch``
    (padding stays on the left) with a seeded generator, then asks the model. Everything
    else -- ``max_length``, ``id`` -- is the model's.
    """

    def __init__(self, model: Any, seed: int):
        self.model = model
        self.generator = torch.Generator().manual_seed(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        items, lengths = batch.items, batch.lengths
        width = items.shape[1]
        keys = torch.rand(items.shape, generator=self.generator).to(items.device)
        padding = torch.arange(width, device=items.device)[None, :] < (width - lengths[:, None])
        keys = keys.masked_fill(padding, -1.0)  # padding sorts first and stays left
        order = keys.argsort(dim=1)
        return self.model.score(SequenceBatch(items.gather(1, order), lengths))


def sample_users(queries: Queries, users: int, seed: int) -> np.ndarray | None:
    """The positions (sorted) of the queries of at most ``users`` test users drawn at
    random (seeded) among those with a query; ``None`` when there are not more than
    ``users`` of them (or ``users`` is 0): every query is read."""
    rows = np.unique(queries.row)
    if users == 0 or len(rows) <= users:
        return None
    chosen = np.random.default_rng([seed, 0x0DE5]).choice(rows, size=users, replace=False)
    return np.flatnonzero(np.isin(queries.row, chosen))


def paired_values(
    in_order: Mapping[str, np.ndarray], shuffled: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric of ``names`` that both cells hold: the in-order and the shuffled values
    over the same queries (the in-order ones restricted to the shuffled cell's
    :data:`QUERY_INDEX`, when it read a sample)."""
    index = shuffled.get(QUERY_INDEX)
    return {
        name: (in_order[name] if index is None else in_order[name][index], shuffled[name])
        for name in names
        if name in in_order and name in shuffled
    }


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
class OrderComparison:
    """In-order against shuffled for one metric: the two means over the same queries,
    the paired two-sided Wilcoxon signed-rank test's p-value, and that p-value
    Holm-adjusted across the metrics compared together (:func:`order_verdict`)."""

    metric: str
    in_order: float
    shuffled: float
    p_value: float
    adjusted_p: float

    def separates(self, alpha: float) -> bool:
        """Whether the adjusted p-value is below ``alpha`` (NaN: nothing to test, no)."""
        return bool(self.adjusted_p < alpha)


@dataclass(frozen=True)
class OrderVerdict:
    """The order check of one model and protocol over several metrics: every
    comparison, and the conclusion in words, which names the metrics that separate."""

    comparisons: tuple[OrderComparison, ...]
    conclusion: str


def order_verdict(
    values: Mapping[str, tuple[np.ndarray, np.ndarray]],
    alpha: float = 0.05,
    users: np.ndarray | None = None,
) -> OrderVerdict:
    """Whether order matters, from every metric in ``values``.

    ``values`` maps a metric name (higher is better) to its per-query values in order and
    shuffled, over the same queries. Each metric gets a paired, two-sided Wilcoxon
    signed-rank test -- over users when ``users`` gives each query's test user (a
    user's differences averaged first, :func:`recbench.stats.significance.pooled_differences`),
    over queries otherwise; the p-values are Holm-adjusted across the metrics, and a metric
    separates the two when its adjusted p-value is below ``alpha``. The verdict is "order
    matters" when every separating metric is worse shuffled, "better without order" when
    every one is better, "mixed" when they disagree, and "no evidence" when none separates.
    """
    names = list(values)
    means, raw = [], []
    for name in names:
        a = np.asarray(values[name][0], dtype=np.float64)
        b = np.asarray(values[name][1], dtype=np.float64)
        raw.append(
            significance.pooled_paired_test(
                {0: a}, {0: b}, "wilcoxon", users=None if users is None else {0: users}
            )
        )
        means.append((float(a.mean()), float(b.mean())))
    adjusted = significance.holm(raw) if names else np.empty(0)
    comparisons = tuple(
        OrderComparison(name, mean_a, mean_b, float(p), float(q))
        for name, (mean_a, mean_b), p, q in zip(names, means, raw, adjusted, strict=True)
    )
    separating = [c for c in comparisons if c.separates(alpha)]
    worse = [c.metric for c in separating if c.shuffled < c.in_order]
    better = [c.metric for c in separating if c.shuffled > c.in_order]
    rest = [n for n in names if n not in worse and n not in better]
    no_difference = f" (no difference on {_listed(rest)})" if rest else ""
    if not separating:
        conclusion = (
            f"no evidence that order matters on {_listed(names)} (Holm-adjusted p ≥ {alpha} "
            "for each): the model does as well without it"
        )
    elif worse and better:
        conclusion = (
            f"mixed: without order the model loses on {_listed(worse)} but gains on "
            f"{_listed(better)}"
        )
    elif worse:
        conclusion = (
            f"order matters: without it the model loses accuracy on {_listed(worse)}"
            + no_difference
        )
    else:
        conclusion = (
            f"the model does better without order on {_listed(better)}: it uses none of "
            "the order's signal" + no_difference
        )
    return OrderVerdict(comparisons, conclusion)


def _listed(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def is_ablation(cell: dict[str, Any]) -> bool:
    """Whether a result cell belongs to an ablation rather than to the benchmark."""
    return bool(cell.get("ablation"))
