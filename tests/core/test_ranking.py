"""Batched top-K ranking: padding, seen-item exclusion, tie policies, bad scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS, Queries, build_queries
from recbench.errors import ConfigError, PluginError
from recbench.ranking import TIE_POLICIES, RankingStore, rank

INF = float("inf")


def rank_all(scores, queries: Queries, k: int, *, exclude_seen=True, ties="pessimistic"):
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return rank(scores, queries, np.arange(len(queries)), k, exclude_seen=exclude_seen, ties=ties)


# One user [1, 2, 3, 4] and six items; last-item: input [1, 2, 3], target 4.
LAST_ITEM = build_queries("last-item", Sequences.from_lists([[1, 2, 3, 4]], n_items=6))
#             pad  1    2    3    4    5    6
LAST_SCORES = [[9.0, 0.5, 0.9, 0.1, 0.7, 0.7, 0.2]]


def test_seen_items_and_padding_are_never_ranked():
    ranking = rank_all(LAST_SCORES, LAST_ITEM, 3)
    # 1, 2, 3 are seen; padding scores 9 but is never ranked; 4 ties with 5 (pessimistic).
    assert ranking.items.tolist() == [[5, 4, 6]]
    assert ranking.is_next.tolist() == [[False, True, False]]
    assert ranking.is_target.tolist() == [[False, True, False]]
    assert ranking.is_remaining.tolist() == [[False, True, False]]
    assert ranking.n_targets.tolist() == [1]
    assert ranking.n_remaining.tolist() == [1]
    assert ranking.row.tolist() == [0]


def test_without_exclusion_seen_items_are_ranked_but_padding_is_not():
    ranking = rank_all(LAST_SCORES, LAST_ITEM, 6, exclude_seen=False)
    assert ranking.items.tolist() == [[2, 5, 4, 1, 6, 3]]


def test_optimistic_ties_put_the_target_first():
    ranking = rank_all(LAST_SCORES, LAST_ITEM, 3, ties="optimistic")
    assert ranking.items.tolist() == [[4, 5, 6]]
    assert ranking.is_next.tolist() == [[True, False, False]]


def test_ranks_beyond_the_rankable_items_are_empty_and_never_hits():
    ranking = rank_all(LAST_SCORES, LAST_ITEM, 5)  # only 4, 5, 6 can be ranked
    assert ranking.items.tolist() == [[5, 4, 6, 0, 0]]
    assert ranking.is_target.tolist() == [[False, True, False, False, False]]
    ranking = rank_all(LAST_SCORES, LAST_ITEM, 10)  # K larger than the catalogue
    assert ranking.items.shape == (1, 10)
    assert ranking.is_target.sum().item() == 1


def test_an_item_scored_minus_infinity_is_not_recommended():
    scores = [[0.0, 0.0, 0.0, 0.0, -INF, 1.0, 2.0]]
    ranking = rank_all(scores, LAST_ITEM, 3, ties="optimistic")
    assert ranking.items.tolist() == [[6, 5, 0]]
    assert not ranking.is_target.any()


def test_pessimistic_ties_order_non_targets_then_remaining_then_targets_then_next():
    # Input [1, 2], next 3, remaining {3, 4, 5}; every item scores the same.
    queries = build_queries("iterative", Sequences.from_lists([[1, 2, 3, 4, 5]], n_items=8))
    index = np.array([1])  # p = 2
    scores = torch.zeros(1, 9)
    ranking = rank(scores, queries, index, 6, exclude_seen=True, ties="pessimistic")
    items = ranking.items[0].tolist()
    assert set(items[:3]) == {6, 7, 8}
    assert set(items[3:5]) == {4, 5}
    assert items[5] == 3
    assert ranking.is_remaining[0].tolist() == [False] * 3 + [True] * 3
    assert ranking.is_next[0].tolist() == [False] * 5 + [True]
    assert ranking.n_remaining.tolist() == [3]
    ranking = rank(scores, queries, index, 6, exclude_seen=True, ties="optimistic")
    items = ranking.items[0].tolist()
    assert items[0] == 3
    assert set(items[1:3]) == {4, 5}
    assert set(items[3:]) == {6, 7, 8}


def test_half_split_targets_tie_after_non_targets():
    # Input [1, 2], targets {3, 4, 5}, next 3.
    queries = build_queries("half-split", Sequences.from_lists([[1, 2, 3, 4, 5]], n_items=8))
    ranking = rank_all(torch.zeros(1, 9), queries, 6)
    assert ranking.is_target[0].tolist() == [False] * 3 + [True] * 3
    assert ranking.is_next[0].tolist() == [False] * 5 + [True]
    assert ranking.n_targets.tolist() == [3]


@pytest.mark.parametrize("value", [1.0, -3.5, 1e-30, 1e20, 0.0, 1e-44])
@pytest.mark.parametrize("ties", TIE_POLICIES)
def test_the_tie_policy_never_reorders_different_float32_scores(value, ties):
    above = float(np.nextafter(np.float32(value), np.float32(np.inf)))
    below = float(np.nextafter(np.float32(value), np.float32(-np.inf)))
    # target 4 scores one float32 step above items 5 and 6, which are one step above 3
    scores = [[0.0, -INF, -INF, below, above, value, value]]
    ranking = rank_all(scores, LAST_ITEM, 4, exclude_seen=False, ties=ties)
    assert ranking.items[0, 0].item() == 4
    assert set(ranking.items[0, 1:3].tolist()) == {5, 6}
    assert ranking.items[0, 3].item() == 3
    scores = [[0.0, -INF, -INF, above, below, value, value]]  # now the target is last
    ranking = rank_all(scores, LAST_ITEM, 4, exclude_seen=False, ties=ties)
    assert ranking.items[0].tolist()[3] == 4


def test_scores_are_compared_at_float32_precision():
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0 + 1e-12, 0.0]], dtype=torch.float64)
    ranking = rank(scores, LAST_ITEM, np.array([0]), 2, exclude_seen=True, ties="pessimistic")
    assert ranking.items.tolist() == [[5, 4]]  # a float32 tie: the target goes last


def test_a_repeated_seen_target_is_excluded_but_still_counted():
    # [1, 2, 1, 3]: p = 2 has input [1, 2], next item 1 (seen), remaining {1, 3}
    queries = build_queries("iterative", Sequences.from_lists([[1, 2, 1, 3]], n_items=4))
    index = np.array([1])
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    ranking = rank(scores, queries, index, 3, exclude_seen=True, ties="pessimistic")
    assert ranking.items.tolist() == [[3, 4, 0]]
    assert ranking.is_next.tolist() == [[False, False, False]]
    assert ranking.is_remaining.tolist() == [[True, False, False]]
    assert (ranking.n_targets.item(), ranking.n_remaining.item()) == (1, 2)
    ranking = rank(scores, queries, index, 3, exclude_seen=False, ties="pessimistic")
    assert ranking.items.tolist() == [[1, 2, 3]]
    assert ranking.is_next.tolist() == [[True, False, False]]


def test_scores_are_not_modified_and_broadcast_views_are_accepted():
    scores = torch.tensor(LAST_SCORES[0]).unsqueeze(0).expand(1, -1)
    before = scores.clone()
    for ties in TIE_POLICIES:
        rank(scores, LAST_ITEM, np.array([0]), 3, exclude_seen=True, ties=ties)
    assert torch.equal(scores, before)


@pytest.mark.parametrize(
    "scores",
    [torch.zeros(1, 6), torch.zeros(2, 7), torch.zeros(1, 7, dtype=torch.int64), [[0.0] * 7]],
)
def test_scores_of_the_wrong_shape_or_type_are_a_plugin_error(scores):
    with pytest.raises(PluginError, match=r"shape \[batch, n_items \+ 1\] = \[1, 7\]"):
        rank(scores, LAST_ITEM, np.array([0]), 3, exclude_seen=True)


def test_nan_scores_are_a_plugin_error():
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, 0.0]])
    with pytest.raises(PluginError, match="NaN"):
        rank(scores, LAST_ITEM, np.array([0]), 3, exclude_seen=True)


def test_unknown_tie_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown tie policy 'pessimist'"):
        rank_all(LAST_SCORES, LAST_ITEM, 3, ties="pessimist")


def test_a_ranking_store_gives_back_the_rankings_in_query_order():
    queries = build_queries("iterative", Sequences.from_lists([[1, 2, 3, 4, 5]], n_items=8))
    scores = torch.arange(9, dtype=torch.float32).repeat(4, 1)
    scores[:, 2] = 7.0  # a tie with item 7, and item 2 is seen by every query but the first
    whole = rank(scores, queries, np.arange(4), 3, exclude_seen=True)
    store = RankingStore(queries, 3)
    store.put(
        np.array([3, 1]), rank(scores[[3, 1]], queries, np.array([3, 1]), 3, exclude_seen=True)
    )
    assert store.n_answered_once == 2
    store.put(
        np.array([0, 2]), rank(scores[[0, 2]], queries, np.array([0, 2]), 3, exclude_seen=True)
    )
    assert store.n_answered_once == 4
    for start, stop in ((0, 4), (1, 3)):
        part = store.ranking(start, stop)
        assert len(part) == stop - start and part.k == 3
        for name in (
            "items",
            "is_next",
            "is_target",
            "is_remaining",
            "n_targets",
            "n_remaining",
            "row",
        ):
            assert torch.equal(getattr(part, name), getattr(whole, name)[start:stop]), name
    assert store.items.dtype == torch.int32 and store.levels.dtype == torch.uint8


def test_a_ranking_store_counts_a_query_answered_twice():
    queries = build_queries("iterative", Sequences.from_lists([[1, 2, 3]], n_items=4))
    scores = torch.ones(2, 5)
    store = RankingStore(queries, 2)
    for _ in range(2):
        store.put(np.array([0]), rank(scores[:1], queries, np.array([0]), 2, exclude_seen=False))
    assert store.n_answered_once == 0


def reference_ranking(scores, queries: Queries, k: int, exclude_seen: bool, ties: str):
    """Per query, obviously: sort every rankable item by (score, level) with a full
    stable sort and keep the first k. Returns [Q, K] arrays of scores and levels of the
    ranked items (-inf / 0 at empty ranks): items with equal (score, level) may legally
    come in any order."""
    scores = np.asarray(scores, dtype=np.float32)
    ranked_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ranked_levels = np.zeros((len(queries), k), dtype=np.int64)
    for q in range(len(queries)):
        sequence = queries.sequences.sequence(queries.row[q]).tolist()
        p, n_targets = queries.input_length[q], queries.n_targets[q]
        seen = set(sequence[:p]) if exclude_seen else set()
        candidates = []
        for item in range(1, queries.sequences.n_items + 1):
            if item in seen or scores[q, item] == -np.inf:
                continue
            level = 0
            if item in sequence[p:]:
                level = 1
            if item in sequence[p : p + n_targets]:
                level = 2
            if item == sequence[p]:
                level = 3
            candidates.append((float(scores[q, item]), level))
        if ties == "pessimistic":
            candidates.sort(key=lambda c: (-c[0], c[1]))
        elif ties == "optimistic":
            candidates.sort(key=lambda c: (-c[0], -c[1]))
        else:
            candidates.sort(key=lambda c: -c[0])
        for r, (score, level) in enumerate(candidates[:k]):
            ranked_scores[q, r] = score
            ranked_levels[q, r] = level
    return ranked_scores, ranked_levels


@settings(max_examples=120, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(1, 7), min_size=0, max_size=8), min_size=1, max_size=5),
    protocol=st.sampled_from(PROTOCOLS),
    ties=st.sampled_from(TIE_POLICIES),
    exclude_seen=st.booleans(),
    k=st.integers(1, 10),
    data=st.data(),
)
def test_batched_rank_matches_a_per_query_reference(rows, protocol, ties, exclude_seen, k, data):
    queries = build_queries(protocol, Sequences.from_lists(rows, n_items=7))
    if len(queries) == 0:
        return
    # Few distinct values, so ties are common; -inf means "never recommend".
    row_scores = st.lists(st.sampled_from([0.0, 1.0, 2.0, 2.5, -1.0, -INF]), min_size=8, max_size=8)
    if data.draw(st.booleans(), label="one score vector for every query"):
        scores = np.array([data.draw(row_scores)] * len(queries), dtype=np.float32)
    else:
        n = len(queries)
        scores = np.array(data.draw(st.lists(row_scores, min_size=n, max_size=n)), dtype=np.float32)
    ranking = rank_all(scores, queries, k, exclude_seen=exclude_seen, ties=ties)
    expected_scores, expected_levels = reference_ranking(scores, queries, k, exclude_seen, ties)
    items = ranking.items.numpy()
    got_scores = np.where(items > 0, np.take_along_axis(scores, items, axis=1), -np.inf)
    np.testing.assert_array_equal(got_scores, expected_scores)
    levels = (ranking.is_remaining.int() + ranking.is_target.int() + ranking.is_next.int()).numpy()
    if ties == "arbitrary":  # only the scores are fixed; check the flags against the items
        for q in range(len(queries)):
            sequence = queries.sequences.sequence(queries.row[q]).tolist()
            p, n_targets = queries.input_length[q], queries.n_targets[q]
            for r, item in enumerate(items[q]):
                assert ranking.is_next[q, r] == (item > 0 and item == sequence[p])
                assert ranking.is_target[q, r] == (item in sequence[p : p + n_targets])
                assert ranking.is_remaining[q, r] == (item in sequence[p:])
    else:
        np.testing.assert_array_equal(levels, expected_levels)
    for q in range(len(queries)):
        row_items = items[q][items[q] > 0]
        assert len(set(row_items.tolist())) == len(row_items)  # no item twice
        if exclude_seen:
            sequence = queries.sequences.sequence(queries.row[q]).tolist()
            assert not set(row_items.tolist()) & set(sequence[: queries.input_length[q]])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ties", TIE_POLICIES)
def test_rank_on_cuda_matches_the_cpu(ties):
    rng = np.random.default_rng(0)
    rows = [list(rng.permutation(300)[: rng.integers(2, 40)] + 1) for _ in range(50)]
    queries = build_queries("iterative", Sequences.from_lists(rows, n_items=300))
    index = np.arange(len(queries))
    scores = torch.randint(0, 20, (len(queries), 301)).float()
    on_cpu = rank(scores, queries, index, 20, exclude_seen=True, ties=ties)
    on_cuda = rank(scores.cuda(), queries, index, 20, exclude_seen=True, ties=ties)
    assert on_cuda.items.device.type == "cuda"
    on_cuda = on_cuda.to("cpu")
    if ties != "arbitrary":
        for name in ("is_next", "is_target", "is_remaining", "n_targets", "n_remaining"):
            assert torch.equal(getattr(on_cuda, name), getattr(on_cpu, name))
    chosen = scores.gather(1, on_cuda.items)
    assert torch.equal(chosen, scores.gather(1, on_cpu.items))


def test_a_ranking_store_refuses_item_ids_beyond_32_bits():
    queries = build_queries("iterative", Sequences.from_lists([[1, 2, 3]], n_items=2**31))
    with pytest.raises(ConfigError, match="do not fit a 32-bit item id"):
        RankingStore(queries, 3)
