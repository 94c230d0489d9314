"""Top-k ranking metrics.

Every metric reads a :class:`recbench.plugin.Ranking` (the top-K items of each query and
whether each is the next item, a target or a remaining item) at a cutoff ``k <= K``.
Per-query metrics return float64 ``[Q]`` (the core takes the mean and its confidence
interval and keeps the array for paired tests); corpus metrics return a 0-d tensor for
the whole query set.

With the ``iterative`` protocol a long user gives many queries, so per-query means weigh
users by their length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from recbench.plugin import ConfigError, MetricContext, Ranking


@dataclass(frozen=True)
class NoOptions:
    """This metric has no options."""


def _rank_discounts(k: int, device: torch.device) -> torch.Tensor:
    """float64 ``[k]``: ``1 / log2(rank + 1)`` for ranks 1..k."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


class _RankingMetric:
    """Metadata shared by the ranking metrics."""

    version: ClassVar[str] = "1"
    Options: ClassVar[type] = NoOptions
    per_query: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    bounds: ClassVar[tuple[float, float | None]] = (0.0, 1.0)

    def __init__(self, options: object | None = None):
        self.options = options if options is not None else self.Options()


class ShortTermPredictionSuccess(_RankingMetric):
    """Short-term prediction success: whether the next item is in the top k.

    ``sps@k = 1`` if ``s[p]`` (the item that immediately follows the input) is among the
    first ``k`` recommendations, else 0. Per query.

    References
    ----------
    R. Devooght and H. Bersini, "Long and short-term recommendations with recurrent
    neural networks", UMAP 2017.
    """

    id = "sps"
    headline = 0
    summary = "short-term prediction success: the next item is in the top k"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        return ranking.is_next[:, :k].any(dim=1).to(torch.float64)


class Recall(_RankingMetric):
    """Recall: the share of the remaining items found in the top k.

    ``recall@k = |top-k ∩ s[p:]| / |s[p:]|`` over distinct items. For ``iterative``
    queries the denominator is the whole rest of the sequence, not the single target.
    Per query.

    References
    ----------
    P. Cremonesi, Y. Koren and R. Turrin, "Performance of recommender algorithms on
    top-N recommendation tasks", RecSys 2010.
    """

    id = "recall"
    headline = 1
    summary = "share of the remaining items of the sequence found in the top k"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        found = ranking.is_remaining[:, :k].sum(dim=1)
        return found.to(torch.float64) / ranking.n_remaining.to(torch.float64)


class Precision(_RankingMetric):
    """Precision: the share of the top k that are targets.

    ``precision@k = |top-k ∩ targets| / k``; the denominator is ``k`` even when fewer
    than ``k`` items could be ranked. Per query.

    References
    ----------
    P. Cremonesi, Y. Koren and R. Turrin, "Performance of recommender algorithms on
    top-N recommendation tasks", RecSys 2010.
    """

    id = "precision"
    summary = "share of the top k that are targets"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        return ranking.is_target[:, :k].sum(dim=1).to(torch.float64) / k


class Hit(_RankingMetric):
    """Hit rate: whether any target is in the top k.

    ``hit@k = 1`` if ``top-k ∩ targets`` is not empty, else 0. With a single target
    (``iterative``, ``last-item``) it equals ``sps@k``. Per query.
    """

    id = "hit"
    headline = 4
    summary = "any target is in the top k"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        return ranking.is_target[:, :k].any(dim=1).to(torch.float64)


class ReciprocalRank(_RankingMetric):
    """Reciprocal rank of the first target within the top k.

    ``mrr@k = 1 / r`` where ``r`` is the rank (from 1) of the first target among the
    first ``k`` recommendations, or 0 when there is none; its mean over queries is the
    mean reciprocal rank. Per query.

    References
    ----------
    E. M. Voorhees, "The TREC-8 question answering track report", TREC 1999.
    """

    id = "mrr"
    headline = 2
    summary = "1 / rank of the first target within the top k (0 if none)"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        hits = ranking.is_target[:, :k]
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
        reciprocal = torch.where(hits, 1.0 / ranks, 0.0)
        return reciprocal.max(dim=1).values


class NormalizedDCG(_RankingMetric):
    """Normalised discounted cumulative gain with binary relevance.

    ``ndcg@k = DCG / IDCG`` with ``DCG = sum over ranks r <= k holding a target of
    1 / log2(r + 1)`` and ``IDCG`` the DCG of a list that starts with
    ``min(n_targets, k)`` targets. Per query.

    References
    ----------
    K. Järvelin and J. Kekäläinen, "Cumulated gain-based evaluation of IR techniques",
    ACM Transactions on Information Systems 20(4), 2002.
    """

    id = "ndcg"
    headline = 3
    summary = "normalised discounted cumulative gain of the targets in the top k"

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        hits = ranking.is_target[:, :k]
        discounts = _rank_discounts(k, hits.device)
        dcg = (hits.to(torch.float64) * discounts[: hits.shape[1]]).sum(dim=1)
        ideal_hits = torch.clamp(ranking.n_targets, max=k)
        ideal_dcg = torch.cumsum(discounts, dim=0)[ideal_hits - 1]
        return dcg / ideal_dcg


class UserCoverage(_RankingMetric):
    """User coverage: the share of users with at least one correct recommendation.

    The number of distinct users (``ranking.row``) having a target in the top k of at
    least one of their queries, divided by the number of distinct users with a query.
    Corpus level.

    References
    ----------
    R. Devooght and H. Bersini, "Long and short-term recommendations with recurrent
    neural networks", UMAP 2017.
    """

    id = "user_coverage"
    summary = "share of users with at least one target in the top k"
    per_query = False

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        hit = ranking.is_target[:, :k].any(dim=1)
        users = torch.unique(ranking.row)
        users_with_hit = torch.unique(ranking.row[hit])
        return torch.tensor(
            len(users_with_hit) / max(len(users), 1), dtype=torch.float64, device=hit.device
        )


class ItemCoverage(_RankingMetric):
    """Item coverage: the number of distinct items correctly recommended.

    The number of distinct items that are a target in the top k of at least one query.
    The share of the catalogue is ``value / n_items``. Corpus level.

    References
    ----------
    R. Devooght and H. Bersini, "Long and short-term recommendations with recurrent
    neural networks", UMAP 2017.
    """

    id = "item_coverage"
    count = True
    summary = "number of distinct items that are a correct recommendation (share: / n_items)"
    per_query = False
    bounds = (0.0, None)

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        correct = ranking.items[:, :k][ranking.is_target[:, :k]]
        return torch.tensor(len(torch.unique(correct)), dtype=torch.float64, device=correct.device)


@dataclass(frozen=True)
class BlockbusterOptions:
    """Options of ``blockbuster_share``.

    Parameters
    ----------
    top_share:
        The share of the catalogue that counts as blockbusters (the most popular items
        by training events), in (0, 1].
    """

    top_share: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.top_share <= 1:
            raise ConfigError(
                f"top_share must be in (0, 1], got {self.top_share}",
                where="metric 'blockbuster_share' option top_share",
                hint="use a share of the catalogue such as 0.01",
            )


class BlockbusterShare(_RankingMetric):
    """Blockbuster share: the share of correct recommendations that are blockbusters.

    Blockbusters are the ``top_share`` (default 1%, at least one item) most popular
    items by training events (``ctx.item_counts``); items tied with the least popular
    blockbuster are blockbusters too, and items never seen in training never are. The
    value is the number of (query, rank) pairs in the top k holding a target that is a
    blockbuster, divided by the number holding any target; 0 when there is no correct
    recommendation. Lower means the correct recommendations rely less on the most
    popular items. Corpus level.

    References
    ----------
    R. Devooght and H. Bersini, "Long and short-term recommendations with recurrent
    neural networks", UMAP 2017.
    """

    id = "blockbuster_share"
    summary = "share of correct recommendations among the most popular training items"
    Options = BlockbusterOptions
    per_query = False
    higher_is_better = False
    options: BlockbusterOptions

    def __call__(self, ranking: Ranking, k: int, ctx: MetricContext) -> torch.Tensor:
        counts = ctx.item_counts.to(ranking.items.device)
        is_blockbuster = self._blockbusters(counts, ctx.n_items)
        correct = ranking.items[:, :k][ranking.is_target[:, :k]]
        if len(correct) == 0:
            return torch.tensor(0.0, dtype=torch.float64, device=counts.device)
        return is_blockbuster[correct].to(torch.float64).mean()

    def _blockbusters(self, counts: torch.Tensor, n_items: int) -> torch.Tensor:
        """bool ``[n_items + 1]``: which item ids are blockbusters (never padding)."""
        item_counts = counts[1 : n_items + 1]
        n_top = min(max(1, math.ceil(self.options.top_share * n_items)), n_items)
        threshold = torch.topk(item_counts, n_top).values[-1]
        is_blockbuster = torch.zeros(n_items + 1, dtype=torch.bool, device=counts.device)
        is_blockbuster[1:] = (item_counts >= threshold) & (item_counts > 0)
        return is_blockbuster


RANKING_METRICS: tuple[type, ...] = (
    ShortTermPredictionSuccess,
    Recall,
    Precision,
    Hit,
    ReciprocalRank,
    NormalizedDCG,
    UserCoverage,
    ItemCoverage,
    BlockbusterShare,
)
