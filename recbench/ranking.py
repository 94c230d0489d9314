"""Batched top-K ranking of all items, with seen-item exclusion and a tie policy.

:func:`rank` turns a batch of score rows into a :class:`Ranking`: the top-K item ids of
every query and, for each rank, whether the item is the query's next item, a target or a
remaining item (see :mod:`recbench.data.protocols`). Everything happens on the scores' device
with tensor operations: no Python loop over queries or items.

Scores are compared at float32 precision: model outputs are cast to float32 first, so two
scores that are equal in float32 are a tie.

Tie policies, for items with exactly equal scores:

``pessimistic`` (default)
    An item that counts for a metric ranks after every tied item that does not: tied
    non-remaining items come first, then remaining items, then targets, then the next
    item. A model that gives every item the same score thus earns nothing.
``optimistic``
    The reverse: the next item first, then targets, then remaining items.
``arbitrary``
    Whatever order ``torch.topk`` returns.

Ranks whose score is ``-inf`` (padding, an excluded seen item, or an item the model
scored ``-inf``) are empty: their item is 0 and they never count as a hit. This happens
when fewer than K items are left to rank.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, get_args

import numpy as np
import torch

from recbench.data.interactions import PADDING_ITEM
from recbench.data.protocols import Queries
from recbench.errors import ConfigError, PluginError, close_matches

TiePolicy = Literal["pessimistic", "optimistic", "arbitrary"]
TIE_POLICIES: tuple[str, ...] = get_args(TiePolicy)

# Relative size of the tie-breaking step: far below half a float32 ulp (2**-25 relative),
# far above a float64 ulp (2**-52 relative), so it reorders only exact float32 ties.
_TIE_STEP = 2.0**-35
_TIE_STEP_AT_ZERO = 1e-300

# Levels of an item for a query: how much it counts for the metrics.
_REMAINING, _TARGET, _NEXT = 1, 2, 3


@dataclass
class Ranking:
    """The top-K recommendations of a set of queries and what each rank is.

    Parameters
    ----------
    items:
        int64 ``[Q, K]``: recommended item ids in rank order (0 at an empty rank).
    is_next:
        bool ``[Q, K]``: the item is the query's next item ``s[p]``.
    is_target:
        bool ``[Q, K]``: the item is one of the targets ``s[p : p + n_targets]``.
    is_remaining:
        bool ``[Q, K]``: the item is in the remaining sequence ``s[p:]``.
    n_targets:
        int64 ``[Q]``: the number of distinct target items (at least 1).
    n_remaining:
        int64 ``[Q]``: the number of distinct remaining items (at least 1).
    row:
        int64 ``[Q]``: the query's user (its row in the sequences), for user-level metrics.

    ``is_next`` implies ``is_target``, which implies ``is_remaining``.
    """

    items: torch.Tensor
    is_next: torch.Tensor
    is_target: torch.Tensor
    is_remaining: torch.Tensor
    n_targets: torch.Tensor
    n_remaining: torch.Tensor
    row: torch.Tensor

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @property
    def k(self) -> int:
        """The number of ranks kept per query."""
        return int(self.items.shape[1])

    def to(self, device: torch.device | str) -> Ranking:
        """This ranking with every tensor on ``device``."""
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class RankingStore:
    """The rankings of a whole query set, filled batch by batch in any order, kept compactly.

    Per rank it keeps the item id (int32) and one uint8 level (0: not remaining, then
    remaining, target, next item) instead of an int64 and three booleans: 5 bytes instead
    of 11. The per-query fields of :class:`Ranking` (``n_targets``, ``n_remaining``,
    ``row``) are not stored; they come from the queries when a slice is read back.

    Parameters
    ----------
    queries:
        The query set the rankings answer.
    k:
        The ranks kept per query.
    """

    def __init__(self, queries: Queries, k: int) -> None:
        if queries.sequences.n_items >= 2**31:
            raise ConfigError(
                f"{queries.sequences.n_items:,} items do not fit a 32-bit item id",
                where="evaluation",
                hint="use a catalogue of fewer than 2**31 items",
            )
        self.queries = queries
        self.items = torch.zeros((len(queries), k), dtype=torch.int32)
        self.levels = torch.zeros((len(queries), k), dtype=torch.uint8)
        self.times_answered = np.zeros(len(queries), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.queries)

    def put(self, index: np.ndarray, ranking: Ranking) -> None:
        """Store ``ranking``, the rankings of the queries ``index`` (distinct positions)."""
        index = np.asarray(index, dtype=np.int64)
        where = torch.from_numpy(index)
        self.items[where] = ranking.items.to("cpu", torch.int32)
        levels = ranking.is_remaining.to(torch.uint8)
        levels += ranking.is_target
        levels += ranking.is_next
        self.levels[where] = levels.to("cpu")
        self.times_answered[index] += 1

    @property
    def n_answered_once(self) -> int:
        """How many queries were stored exactly once (all of them when complete)."""
        return int(np.count_nonzero(self.times_answered == 1))

    def ranking(self, start: int = 0, stop: int | None = None) -> Ranking:
        """The queries ``start:stop`` as a :class:`Ranking` (on the CPU)."""
        stop = len(self) if stop is None else stop
        levels = self.levels[start:stop]
        n_targets, n_remaining = self.queries.distinct_counts
        return Ranking(
            items=self.items[start:stop].to(torch.int64),
            is_next=levels >= _NEXT,
            is_target=levels >= _TARGET,
            is_remaining=levels >= _REMAINING,
            n_targets=torch.from_numpy(n_targets[start:stop]),
            n_remaining=torch.from_numpy(n_remaining[start:stop]),
            row=torch.from_numpy(self.queries.row[start:stop]),
        )


def check_tie_policy(ties: str) -> TiePolicy:
    """``ties`` if it is a tie policy; a :class:`ConfigError` listing close ones otherwise."""
    if ties not in TIE_POLICIES:
        raise ConfigError(
            f"unknown tie policy '{ties}'", where="ties", hint=close_matches(ties, TIE_POLICIES)
        )
    return ties  # type: ignore[return-value]


def rank(
    scores: torch.Tensor,
    queries: Queries,
    index: np.ndarray,
    k: int,
    *,
    exclude_seen: bool,
    ties: TiePolicy = "pessimistic",
) -> Ranking:
    """Rank every item for the queries ``index`` and keep the top ``k``.

    Parameters
    ----------
    scores:
        float ``[B, n_items + 1]``, one row per query of ``index``; column 0 (padding) is
        ignored. Not modified.
    queries:
        The query set ``index`` points into.
    index:
        int ``[B]``: positions of the scored queries in ``queries``.
    k:
        How many ranks to keep (``K``). When fewer items can be ranked, the last ranks
        are empty.
    exclude_seen:
        Remove every item of each query's whole input prefix ``s[:p]`` from its ranking
        (not only the items the model was shown after truncation).
    ties:
        ``"pessimistic"``, ``"optimistic"`` or ``"arbitrary"`` (see :mod:`recbench.ranking`).

    Returns
    -------
    Ranking
        On the scores' device.

    Raises
    ------
    PluginError
        When ``scores`` is not a floating-point tensor ``[B, n_items + 1]`` or holds NaN
        among the ranked items.
    """
    ties = check_tie_policy(ties)
    index = np.asarray(index, dtype=np.int64)
    n_queries = len(index)
    n_columns = queries.sequences.n_items + 1
    _check_scores(scores, n_queries, n_columns)
    device = scores.device

    around = queries.items_of(index, device)
    remaining = around.remaining_position * n_columns + around.remaining_item
    targets_of_query = torch.from_numpy(queries.n_targets[index]).to(device)
    offset = around.remaining_offset
    is_target = offset < targets_of_query.index_select(0, around.remaining_position)
    level_of_event = (1 + is_target.to(torch.uint8)) + (offset == 0).to(torch.uint8)
    levels = torch.zeros(n_queries, n_columns, dtype=torch.uint8, device=device)
    # amax: an item repeated in s[p:] keeps the level of its most important occurrence.
    levels.view(-1).scatter_reduce_(0, remaining, level_of_event, reduce="amax")

    key_dtype = torch.float32 if ties == "arbitrary" else torch.float64
    key = torch.empty((n_queries, n_columns), dtype=key_dtype, device=device)
    key.copy_(scores.to(torch.float32))
    flat_key = key.view(-1)
    if ties != "arbitrary":
        tied_score = flat_key.index_select(0, remaining)
        # Infinite scores get no step (inf - inf would be NaN); NaN stays NaN.
        step = tied_score.abs().mul_(_TIE_STEP).nan_to_num_(posinf=0.0).add_(_TIE_STEP_AT_ZERO)
        step.mul_(levels.view(-1).index_select(0, remaining))
        tied_score = tied_score - step if ties == "pessimistic" else tied_score + step
        # Every occurrence of a repeated item writes the same value.
        flat_key.scatter_(0, remaining, tied_score)
    if exclude_seen:
        flat_key.index_fill_(0, around.seen_position * n_columns + around.seen_item, -torch.inf)
    key[:, PADDING_ITEM] = -torch.inf

    top_values, top_items = torch.topk(key, min(k, n_columns), dim=1)
    if torch.isnan(top_values).any():
        raise PluginError(
            "the model returned NaN scores",
            where="model.score",
            hint="the model failed (diverged or was not trained); check its training",
        )
    is_listed = top_values > -torch.inf
    top_levels = torch.where(is_listed, levels.gather(1, top_items), 0)
    items = torch.where(is_listed, top_items, PADDING_ITEM)
    if items.shape[1] < k:
        empty_ranks = k - items.shape[1]
        items = torch.nn.functional.pad(items, (0, empty_ranks), value=PADDING_ITEM)
        top_levels = torch.nn.functional.pad(top_levels, (0, empty_ranks), value=0)
    n_targets, n_remaining = queries.distinct_counts
    return Ranking(
        items=items,
        is_next=top_levels >= _NEXT,
        is_target=top_levels >= _TARGET,
        is_remaining=top_levels >= _REMAINING,
        n_targets=torch.from_numpy(n_targets[index]).to(device),
        n_remaining=torch.from_numpy(n_remaining[index]).to(device),
        row=torch.from_numpy(queries.row[index]).to(device),
    )


def _check_scores(scores: object, n_queries: int, n_columns: int) -> None:
    expected = (n_queries, n_columns)
    if (
        isinstance(scores, torch.Tensor)
        and tuple(scores.shape) == expected
        and scores.is_floating_point()
    ):
        return
    got = (
        f"a {scores.dtype} tensor of shape {list(scores.shape)}"
        if isinstance(scores, torch.Tensor)
        else f"a {type(scores).__name__}"
    )
    raise PluginError(
        f"the model returned {got} as scores",
        where="model.score",
        hint=f"return a floating-point tensor of shape [batch, n_items + 1] = {list(expected)} "
        "(column 0 is padding)",
    )
