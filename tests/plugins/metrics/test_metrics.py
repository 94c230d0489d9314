"""Ranking metrics: hand-computed values, the plugin contract, and properties."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import recbench_metrics
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recbench_metrics.ranking_metrics import RANKING_METRICS, BlockbusterOptions

from recbench.contracts import MetricContext
from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS, build_queries
from recbench.errors import ConfigError
from recbench.ranking import TIE_POLICIES, Ranking, rank
from recbench.registry import Registry

METRICS = {cls.id: cls() for cls in RANKING_METRICS}


def flags(*rows: str) -> torch.Tensor:
    """'.x..' -> [False, True, False, False] per row."""
    return torch.tensor([[c == "x" for c in row] for row in rows])


# Three queries, K = 4. Query 0 and 1 belong to user 0, query 2 to user 1.
# q0: targets {2, 3} (next 2), remaining {2, 3, 9}: hits at ranks 2 and 4
# q1: target {1} (next), remaining {1, 6, 10, 11}: hit at rank 1, remaining 6 at rank 3
# q2: target {9}, remaining {9, 12}: no hit; the last rank is empty
RANKING = Ranking(
    items=torch.tensor([[5, 2, 7, 3], [1, 4, 6, 8], [3, 6, 2, 0]]),
    is_next=flags(".x..", "x...", "...."),
    is_target=flags(".x.x", "x...", "...."),
    is_remaining=flags(".x.x", "x.x.", "...."),
    n_targets=torch.tensor([2, 1, 1]),
    n_remaining=torch.tensor([3, 4, 2]),
    row=torch.tensor([0, 0, 1]),
)
N_ITEMS = 200
COUNTS = torch.zeros(N_ITEMS + 1, dtype=torch.int64)
COUNTS[1], COUNTS[2], COUNTS[3:20] = 100, 50, 10  # top 1% of 200 items: items 1 and 2
CONTEXT = MetricContext(n_items=N_ITEMS, item_counts=COUNTS, n_users=2)


def values(metric_id: str, k: int) -> list[float]:
    result = METRICS[metric_id](RANKING, k, CONTEXT)
    assert result.dtype == torch.float64
    return result.tolist()


def test_sps():
    assert values("sps", 1) == [0, 1, 0]
    assert values("sps", 2) == [1, 1, 0]


def test_hit():
    assert values("hit", 1) == [0, 1, 0]
    assert values("hit", 4) == [1, 1, 0]


def test_recall():
    assert values("recall", 2) == pytest.approx([1 / 3, 1 / 4, 0])
    assert values("recall", 4) == pytest.approx([2 / 3, 2 / 4, 0])


def test_precision():
    assert values("precision", 2) == pytest.approx([1 / 2, 1 / 2, 0])
    assert values("precision", 4) == pytest.approx([2 / 4, 1 / 4, 0])


def test_mrr():
    assert values("mrr", 1) == [0, 1, 0]
    assert values("mrr", 4) == pytest.approx([1 / 2, 1, 0])


def test_ndcg():
    # q0: hits at ranks 2 and 4; ideal: 2 targets at ranks 1 and 2
    ideal = 1 + 1 / math.log2(3)
    assert values("ndcg", 4) == pytest.approx([(1 / math.log2(3) + 1 / math.log2(5)) / ideal, 1, 0])
    assert values("ndcg", 2) == pytest.approx([(1 / math.log2(3)) / ideal, 1, 0])
    assert values("ndcg", 1) == pytest.approx([0, 1, 0])  # ideal at k=1: one target


def test_ndcg_ideal_uses_at_most_k_targets():
    ranking = Ranking(
        items=torch.tensor([[1, 2]]),
        is_next=flags("x."),
        is_target=flags("xx"),
        is_remaining=flags("xx"),
        n_targets=torch.tensor([5]),
        n_remaining=torch.tensor([5]),
        row=torch.tensor([0]),
    )
    assert METRICS["ndcg"](ranking, 2, CONTEXT).tolist() == [1.0]


def test_user_coverage():
    assert METRICS["user_coverage"](RANKING, 4, CONTEXT).item() == 0.5  # user 0 of {0, 1}
    assert METRICS["user_coverage"](RANKING, 1, CONTEXT).item() == 0.5


def test_item_coverage():
    assert METRICS["item_coverage"](RANKING, 4, CONTEXT).item() == 3  # 2, 3 and 1
    assert METRICS["item_coverage"](RANKING, 2, CONTEXT).item() == 2  # 2 and 1
    assert METRICS["item_coverage"](RANKING, 1, CONTEXT).item() == 1  # 1


def test_blockbuster_share():
    # correct recommendations at k=4: 2 (q0), 3 (q0), 1 (q1); blockbusters: 1, 2
    assert METRICS["blockbuster_share"](RANKING, 4, CONTEXT).item() == pytest.approx(2 / 3)
    assert METRICS["blockbuster_share"](RANKING, 1, CONTEXT).item() == 1.0  # only item 1


def test_blockbuster_share_is_zero_without_hits():
    no_hits = dataclasses.replace(RANKING, is_target=torch.zeros(3, 4, dtype=torch.bool))
    assert METRICS["blockbuster_share"](no_hits, 4, CONTEXT).item() == 0.0


def test_blockbuster_share_includes_items_tied_at_the_cut():
    # top_share 0.01 of 200 items = 2 items; items 2 and 3 tie for second place.
    counts = COUNTS.clone()
    counts[3] = 50
    context = MetricContext(n_items=N_ITEMS, item_counts=counts, n_users=2)
    assert METRICS["blockbuster_share"](RANKING, 4, context).item() == 1.0
    wider = type(METRICS["blockbuster_share"])(BlockbusterOptions(top_share=0.1))
    assert wider(RANKING, 4, CONTEXT).item() == 1.0  # 20 items: 1, 2, 3..19 (all tied)


def test_blockbuster_top_share_must_be_a_share():
    with pytest.raises(ConfigError, match="top_share must be in"):
        BlockbusterOptions(top_share=1.5)


def test_every_metric_registers_through_the_plugin_contract():
    registry = Registry()
    assert registry.add_plugin("recbench_metrics", recbench_metrics, "recbench", "0")
    assert registry.failures == []
    ids = {info.id for info in registry.all("metric")}
    assert ids == {
        "sps",
        "recall",
        "precision",
        "hit",
        "mrr",
        "ndcg",
        "user_coverage",
        "item_coverage",
        "blockbuster_share",
        "rmse",
        "mae",
    }
    for info in registry.all("metric"):
        assert info.cls.__doc__ and info.cls.bounds[0] == 0.0


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.integers(1, 30), min_size=2, max_size=12, unique=True), min_size=1, max_size=6
    ),
    protocol=st.sampled_from(PROTOCOLS),
    ties=st.sampled_from(TIE_POLICIES),
    exclude_seen=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_metric_properties_on_random_rankings(rows, protocol, ties, exclude_seen, seed):
    n_items = 30
    queries = build_queries(protocol, Sequences.from_lists(rows, n_items))
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (len(queries), n_items + 1), generator=generator).float()
    ranking = rank(
        scores, queries, np.arange(len(queries)), 20, exclude_seen=exclude_seen, ties=ties
    )
    counts = torch.as_tensor(queries.sequences.item_counts())
    context = MetricContext(n_items=n_items, item_counts=counts, n_users=queries.n_users)
    at = {
        (metric_id, k): metric(ranking, k, context)
        for metric_id, metric in METRICS.items()
        for k in (1, 5, 10, 20)
    }
    for (metric_id, _k), value in at.items():
        metric = METRICS[metric_id]
        assert value.shape == ((len(queries),) if metric.per_query else ())
        low, high = metric.bounds
        assert (value >= low).all()
        assert high is None or (value <= high + 1e-12).all()
    for k in (1, 5, 10, 20):
        hit, sps, recall = at["hit", k], at["sps", k], at["recall", k]
        assert (hit >= sps).all()
        assert (at["ndcg", k] <= hit).all()
        assert (at["mrr", k] <= hit).all()
        assert (at["precision", k] * k <= ranking.n_targets + 1e-9).all()
        assert at["item_coverage", k] <= n_items
        if protocol != "iterative":  # iterative: recall counts items after the target too
            assert (recall <= hit).all()
    for short, long in ((1, 5), (5, 10), (10, 20)):
        for metric_id in ("sps", "hit", "recall", "mrr", "user_coverage", "item_coverage"):
            assert (at[metric_id, short] <= at[metric_id, long]).all()
