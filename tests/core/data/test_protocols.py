"""Evaluation protocols: which queries a sequence gives, and what the model receives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbench.data.interactions import Sequences
from recbench.data.protocols import (
    PROTOCOLS,
    _ragged,
    _ragged_on_device,
    build_queries,
    canonical_protocol,
)
from recbench.errors import ConfigError

# user 0 has 5 items, user 1 has 2, user 2 has 1 (no query), user 3 has none (no query)
SEQUENCES = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7], [8], []], n_items=8)


def test_half_split_input_is_the_first_half_and_targets_the_rest():
    queries = build_queries("half-split", SEQUENCES)
    assert queries.protocol == "half-split"
    assert queries.row.tolist() == [0, 1]
    assert queries.input_length.tolist() == [2, 1]  # floor(5 / 2), floor(2 / 2)
    assert queries.n_targets.tolist() == [3, 1]  # [3, 4, 5] and [7]
    assert len(queries) == 2


def test_iterative_gives_one_query_per_prefix_with_the_next_item_as_target():
    queries = build_queries("iterative", SEQUENCES)
    assert queries.row.tolist() == [0, 0, 0, 0, 1]
    assert queries.input_length.tolist() == [1, 2, 3, 4, 1]
    assert queries.n_targets.tolist() == [1, 1, 1, 1, 1]


def test_last_item_targets_the_last_item():
    queries = build_queries("last-item", SEQUENCES)
    assert queries.row.tolist() == [0, 1]
    assert queries.input_length.tolist() == [4, 1]
    assert queries.n_targets.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("iterative-next-item", "iterative"), ("next-item", "iterative"), ("last", "last-item")]
    + [(name, name) for name in PROTOCOLS],
)
def test_aliases_select_the_canonical_protocol(alias, canonical):
    assert canonical_protocol(alias) == canonical
    assert build_queries(alias, SEQUENCES).protocol == canonical


def test_unknown_protocol_is_a_config_error_with_close_matches():
    with pytest.raises(
        ConfigError, match=r"unknown protocol 'half_split'.*did you mean 'half-split'"
    ):
        build_queries("half_split", SEQUENCES)


def test_seen_and_remaining_items_of_a_query():
    queries = build_queries("iterative", SEQUENCES)
    around = queries.items_of(np.array([2, 4]), "cpu")  # user 0 with p=3, user 1 with p=1
    assert around.seen_position.tolist() == [0, 0, 0, 1]
    assert around.seen_item.tolist() == [1, 2, 3, 6]
    assert around.remaining_position.tolist() == [0, 0, 1]
    assert around.remaining_item.tolist() == [4, 5, 7]
    assert around.remaining_offset.tolist() == [0, 1, 0]
    empty = queries.items_of(np.array([], dtype=np.int64), "cpu")
    assert all(len(values) == 0 for values in empty)


def test_the_items_of_queries_of_users_of_different_lengths_in_one_batch():
    sequences = Sequences.from_lists([[5, 1, 5, 2, 9, 3], [7, 8], [4, 6, 4]], n_items=9)
    queries = build_queries("iterative", sequences)
    index = np.array([4, 0, 5, 6])  # (user, p): (0, 5), (0, 1), (1, 1), (2, 1)
    assert list(zip(queries.row[index], queries.input_length[index], strict=True)) == [
        (0, 5), (0, 1), (1, 1), (2, 1)
    ]  # fmt: skip
    around = queries.items_of(index, "cpu")
    assert around.seen_position.tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    assert around.seen_item.tolist() == [5, 1, 5, 2, 9, 5, 7, 4]
    assert around.remaining_position.tolist() == [0, 1, 1, 1, 1, 1, 2, 3, 3]
    assert around.remaining_item.tolist() == [3, 1, 5, 2, 9, 3, 8, 6, 4]
    assert around.remaining_offset.tolist() == [0, 0, 1, 2, 3, 4, 0, 0, 1]


def test_the_device_path_of_the_items_of_queries_equals_the_host_path():
    """On a GPU the ranges are built with torch (:func:`_ragged_on_device`); on a CPU with
    numpy. Run here on the CPU, the torch path must give the same tensors."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 1000, size=50)
    lengths = rng.integers(0, 30, size=50)
    lengths[[0, 7, 49]] = 0  # empty ranges, also first and last
    host = _ragged(starts, lengths, torch.device("cpu"))
    device = _ragged_on_device(starts, lengths, torch.device("cpu"))
    for name, a, b in zip(("row", "event", "offset"), host, device, strict=True):
        assert torch.equal(a, b), name
    assert host[0].tolist() == np.repeat(np.arange(50), lengths).tolist()
    assert host[1].tolist() == [
        s + j for s, n in zip(starts, lengths, strict=True) for j in range(n)
    ]


def test_model_inputs_are_left_padded_with_the_most_recent_item_last():
    queries = build_queries("iterative", SEQUENCES)
    batch = queries.model_inputs(np.arange(len(queries)), None, torch.device("cpu"))
    assert batch.items.dtype == torch.int64
    assert batch.items.tolist() == [
        [0, 0, 0, 1],
        [0, 0, 1, 2],
        [0, 1, 2, 3],
        [1, 2, 3, 4],
        [0, 0, 0, 6],
    ]
    assert batch.lengths.tolist() == [1, 2, 3, 4, 1]


def test_model_inputs_keep_the_most_recent_max_length_items():
    queries = build_queries("iterative", SEQUENCES)
    batch = queries.model_inputs(np.arange(len(queries)), 2, "cpu")
    assert batch.items.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [0, 6]]
    assert batch.lengths.tolist() == [1, 2, 2, 2, 1]
    # The width is the longest (truncated) input of the batch, not max_length.
    batch = queries.model_inputs(np.array([4, 0]), 3, "cpu")
    assert batch.items.tolist() == [[6], [1]]


def test_distinct_counts_without_repeats_are_the_plain_counts():
    queries = build_queries("half-split", SEQUENCES)
    n_targets, n_remaining = queries.distinct_counts
    assert n_targets.tolist() == [3, 1]
    assert n_remaining.tolist() == [3, 1]


def test_distinct_counts_count_a_repeated_item_once():
    sequences = Sequences.from_lists([[1, 2, 1, 3, 2], [5, 5, 5]], n_items=5)
    half = build_queries("half-split", sequences)
    # [1, 2 | 1, 3, 2] -> targets {1, 3, 2}; [5 | 5, 5] -> {5}
    assert [c.tolist() for c in half.distinct_counts] == [[3, 1], [3, 1]]
    iterative = build_queries("iterative", sequences)
    n_targets, n_remaining = iterative.distinct_counts
    assert n_targets.tolist() == [1, 1, 1, 1, 1, 1]
    # s[1:] = {2, 1, 3}, s[2:] = {1, 3, 2}, s[3:] = {3, 2}, s[4:] = {2}; [5, 5] and [5]
    assert n_remaining.tolist() == [3, 3, 2, 1, 1, 1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=9), min_size=1, max_size=6),
    st.sampled_from(PROTOCOLS),
)
def test_queries_match_the_definitions(rows, protocol):
    queries = build_queries(protocol, Sequences.from_lists(rows, n_items=6))
    expected = []
    for row, sequence in enumerate(rows):
        n = len(sequence)
        if n < 2:
            continue
        if protocol == "half-split":
            expected.append((row, n // 2, n - n // 2))
        elif protocol == "last-item":
            expected.append((row, n - 1, 1))
        else:
            expected.extend((row, t, 1) for t in range(1, n))
    got = list(
        zip(
            queries.row.tolist(),
            queries.input_length.tolist(),
            queries.n_targets.tolist(),
            strict=True,
        )
    )
    assert got == expected
    n_targets, n_remaining = queries.distinct_counts
    for q, (row, p, count) in enumerate(expected):
        sequence = rows[row]
        assert n_targets[q] == len(set(sequence[p : p + count]))
        assert n_remaining[q] == len(set(sequence[p:]))
