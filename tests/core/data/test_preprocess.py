"""Filtering, chronological ordering, id remapping and dataset statistics."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recbench.config.options import parse_options
from recbench.data.interactions import Interactions, Sequences
from recbench.data.preprocess import PreprocessOptions, dataset_statistics, preprocess
from recbench.errors import ConfigError, DataError

NO_FILTERS = PreprocessOptions(min_user_activity=1, min_item_pop=1)


def events(
    rows: list[tuple[int, ...]], *, timestamps: bool = True, ratings: bool = True
) -> Interactions:
    """Interactions from (user, item, timestamp, rating) tuples."""
    columns = list(zip(*rows, strict=True))
    return Interactions(
        user=np.array(columns[0]),
        item=np.array(columns[1]),
        timestamp=np.array(columns[2]) if timestamps else None,
        rating=np.array(columns[3], dtype=float) if ratings else None,
    )


def raw_sequences(sequences: Sequences, item_ids: np.ndarray) -> dict[int, list[int]]:
    return {
        int(user): item_ids[sequences.sequence(row)].tolist()
        for row, user in enumerate(sequences.users)
    }


def test_equal_timestamps_keep_the_original_row_order() -> None:
    data = events([(7, 10, 5, 4), (7, 20, 3, 4), (7, 30, 5, 4), (7, 40, 3, 4), (7, 50, 4, 4)])
    sequences, item_ids = preprocess(data, NO_FILTERS)
    assert raw_sequences(sequences, item_ids) == {7: [20, 40, 50, 10, 30]}
    assert sequences.timestamps.tolist() == [3, 3, 4, 5, 5]


def test_without_timestamps_rows_keep_file_order() -> None:
    data = events([(1, 30, 0, 0), (2, 10, 0, 0), (1, 10, 0, 0), (1, 20, 0, 0)], timestamps=False)
    sequences, item_ids = preprocess(data, NO_FILTERS)
    assert raw_sequences(sequences, item_ids) == {1: [30, 10, 20], 2: [10]}
    assert sequences.timestamps is None


def test_items_are_remapped_to_one_based_ids_with_padding_zero() -> None:
    data = events([(5, 900, 1, 3), (5, 17, 2, 3), (3, 42, 1, 3), (3, 900, 2, 3)])
    sequences, item_ids = preprocess(data, NO_FILTERS)
    assert item_ids.tolist() == [-1, 17, 42, 900]  # ascending raw ids; 0 is padding
    assert sequences.n_items == 3
    assert sequences.items.min() == 1 and sequences.items.max() == 3
    assert sequences.users.tolist() == [3, 5]  # rows in ascending raw user id
    assert sequences.items.tolist() == [2, 3, 3, 1]
    assert sequences.items.dtype == np.int32 and sequences.offsets.dtype == np.int64
    assert sequences.offsets.tolist() == [0, 2, 4]
    assert sequences.item_counts()[0] == 0


def test_ratings_and_timestamps_follow_their_events() -> None:
    data = events([(1, 10, 30, 1), (1, 20, 10, 2), (1, 30, 20, 3)])
    sequences, item_ids = preprocess(data, NO_FILTERS)
    assert item_ids[sequences.items].tolist() == [20, 30, 10]
    assert sequences.ratings.tolist() == [2, 3, 1]
    assert sequences.ratings.dtype == np.float32


def test_min_rating_drops_low_ratings_first() -> None:
    data = events([(1, 10, 1, 5), (1, 20, 2, 2), (1, 30, 3, 4), (2, 10, 1, 3.5)])
    sequences, item_ids = preprocess(
        data, PreprocessOptions(min_rating=3.5, min_user_activity=1, min_item_pop=1)
    )
    assert raw_sequences(sequences, item_ids) == {1: [10, 30], 2: [10]}
    assert 20 not in item_ids


def test_filters_run_once_in_the_documented_order() -> None:
    # Item 99 is rare (1 event) and goes first; user 3 then has one event left and goes;
    # item 50 drops to a single event but the item filter does not run again.
    rows = [
        (1, 10, 1, 5),
        (1, 50, 2, 5),
        (2, 10, 1, 5),
        (2, 20, 2, 5),
        (3, 99, 1, 5),
        (3, 50, 2, 5),
    ]
    rows += [(4, 10, 1, 5), (4, 20, 2, 5)]
    options = PreprocessOptions(min_item_pop=2, min_user_activity=2)
    sequences, item_ids = preprocess(events(rows), options)
    assert raw_sequences(sequences, item_ids) == {1: [10, 50], 2: [10, 20], 4: [10, 20]}
    assert sequences.item_counts()[item_ids.tolist().index(50)] == 1


def test_everything_filtered_names_the_dataset_and_what_to_lower() -> None:
    data = events([(1, 10, 1, 5), (2, 20, 1, 5)])
    with pytest.raises(DataError) as caught:
        preprocess(data, PreprocessOptions(min_item_pop=5), dataset="ml-tiny")
    message = str(caught.value)
    assert "ml-tiny" in message and "min_item_pop=5" in message and "min_user_activity=2" in message
    assert "lower" in message


def test_min_rating_on_data_without_ratings_is_an_error() -> None:
    data = events([(1, 10, 1, 5)], ratings=False)
    with pytest.raises(DataError, match="has no ratings"):
        preprocess(
            data, PreprocessOptions(min_rating=4, min_user_activity=1, min_item_pop=1), dataset="x"
        )


def test_no_events_is_an_error() -> None:
    empty = Interactions(user=np.zeros(0, dtype=np.int64), item=np.zeros(0, dtype=np.int64))
    with pytest.raises(DataError, match="no events"):
        preprocess(empty, NO_FILTERS)


def test_sparse_and_negative_raw_ids() -> None:
    data = events([(10**12, -5, 2, 1), (10**12, 7 * 10**11, 1, 1), (-3, -5, 1, 1)])
    sequences, item_ids = preprocess(data, NO_FILTERS)
    assert sequences.users.tolist() == [-3, 10**12]
    assert raw_sequences(sequences, item_ids) == {-3: [-5], 10**12: [7 * 10**11, -5]}


def test_options_are_validated_through_parse_options() -> None:
    assert (
        parse_options(PreprocessOptions, {"min_rating": "4"}, owner="preprocess").min_rating == 4.0
    )
    assert (
        parse_options(PreprocessOptions, {"min_rating": "none"}, owner="preprocess").min_rating
        is None
    )
    with pytest.raises(ConfigError, match="min_user_activity must be at least 1"):
        parse_options(PreprocessOptions, {"min_user_activity": "0"}, owner="preprocess")


def reference(
    rows: list[tuple[int, int, int, int]], options: PreprocessOptions
) -> dict[int, list[int]]:
    """A slow, obvious implementation of the documented behaviour."""
    kept = [
        (r, row)
        for r, row in enumerate(rows)
        if options.min_rating is None or row[3] >= options.min_rating
    ]
    item_count: dict[int, int] = defaultdict(int)
    for _, row in kept:
        item_count[row[1]] += 1
    kept = [(r, row) for r, row in kept if item_count[row[1]] >= options.min_item_pop]
    user_count: dict[int, int] = defaultdict(int)
    for _, row in kept:
        user_count[row[0]] += 1
    kept = [(r, row) for r, row in kept if user_count[row[0]] >= options.min_user_activity]
    by_user: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for r, row in kept:
        by_user[row[0]].append((row[2], r, row[1]))
    return {user: [item for _, _, item in sorted(by_user[user])] for user in sorted(by_user)}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 4), st.integers(1, 5)),
        min_size=1,
        max_size=60,
    ),
    min_rating=st.none() | st.integers(1, 5),
    min_item_pop=st.integers(1, 3),
    min_user_activity=st.integers(1, 3),
)
def test_matches_a_reference_implementation(
    rows: list[tuple[int, int, int, int]],
    min_rating: int | None,
    min_item_pop: int,
    min_user_activity: int,
) -> None:
    options = PreprocessOptions(
        min_rating=min_rating, min_item_pop=min_item_pop, min_user_activity=min_user_activity
    )
    expected = reference(rows, options)
    if not expected:
        with pytest.raises(DataError):
            preprocess(events(rows), options)
        return
    sequences, item_ids = preprocess(events(rows), options)
    assert raw_sequences(sequences, item_ids) == expected
    assert item_ids[1:].tolist() == sorted({item for items in expected.values() for item in items})


def test_statistics_describe_the_sequences() -> None:
    rows = [
        (1, 10, 5, 4),
        (1, 20, 5, 4),
        (1, 30, 6, 4),
        (2, 10, 7, 4),
        (2, 20, 7, 4),
        (3, 10, 1, 4),
    ]
    rows += [(3, 20, 2, 4), (3, 30, 3, 4), (3, 40, 4, 4), (3, 50, 5, 4)]
    sequences, _ = preprocess(events(rows), NO_FILTERS)
    stats = dataset_statistics(sequences, raw_events=12)
    assert (
        stats["users"] == 3
        and stats["items"] == 5
        and stats["events"] == 10
        and stats["raw_events"] == 12
    )
    assert stats["density"] == pytest.approx(10 / 15)
    assert stats["sequence_length"] == {
        "min": 2,
        "p25": 2.5,
        "median": 3.0,
        "p75": 4.0,
        "max": 5,
        "mean": 10 / 3,
    }
    # user 1: 5,5,6 (one tie); user 2: 7,7 (one tie); user 3 starts at 1 after user 2's 7.
    assert stats["same_timestamp_share"] == pytest.approx(2 / 10)
    assert stats["has_repeats"] is False
    assert stats["has_timestamps"] is True and stats["has_ratings"] is True


def test_statistics_see_repeats_within_a_user_only() -> None:
    across_users = events([(1, 10, 1, 1), (2, 10, 1, 1)], ratings=False)
    assert dataset_statistics(preprocess(across_users, NO_FILTERS)[0], 2)["has_repeats"] is False
    within = events([(1, 10, 1, 1), (1, 20, 2, 1), (1, 10, 3, 1)], timestamps=False, ratings=False)
    stats = dataset_statistics(preprocess(within, NO_FILTERS)[0], 3)
    assert stats["has_repeats"] is True
    assert stats["same_timestamp_share"] is None and stats["has_ratings"] is False


# -- duplicate events and non-finite ratings ----------------------------------------------

DUPLICATED = [
    (1, 10, 5, 4),
    (1, 20, 5, 3),
    (1, 10, 5, 2),
    (2, 10, 7, 1),
    (2, 10, 8, 1),
    (1, 10, 5, 1),
]


def test_duplicate_events_are_counted_and_kept_by_default() -> None:
    warnings: list[str] = []
    sequences, item_ids = preprocess(events(DUPLICATED), NO_FILTERS, warn=warnings.append)
    assert raw_sequences(sequences, item_ids) == {1: [10, 20, 10, 10], 2: [10, 10]}
    assert len(warnings) == 1
    assert warnings[0].startswith("2 duplicate events (same user, item and timestamp")
    assert "seen-item exclusion off" in warnings[0] and "preprocess.duplicates=drop" in warnings[0]
    assert dataset_statistics(sequences, len(DUPLICATED))["has_repeats"] is True


def test_dropping_duplicate_events_keeps_the_first_of_each() -> None:
    warnings: list[str] = []
    options = PreprocessOptions(min_user_activity=1, min_item_pop=1, duplicates="drop")
    sequences, item_ids = preprocess(events(DUPLICATED), options, warn=warnings.append)
    assert raw_sequences(sequences, item_ids) == {1: [10, 20], 2: [10, 10]}
    assert sequences.ratings is not None and sequences.ratings.tolist() == [4, 3, 1, 1]
    assert warnings == [
        "2 duplicate events (same user, item and timestamp as an earlier event) dropped "
        "(preprocess.duplicates=drop)"
    ]


def test_no_duplicates_no_warning_and_the_same_sequences_either_way() -> None:
    rows = [(1, 10, 1, 1), (1, 10, 2, 1), (1, 20, 2, 1), (2, 30, 1, 1)]
    warnings: list[str] = []
    kept = preprocess(events(rows), NO_FILTERS, warn=warnings.append)
    options = PreprocessOptions(min_user_activity=1, min_item_pop=1, duplicates="drop")
    dropped = preprocess(events(rows), options, warn=warnings.append)
    assert warnings == []
    assert raw_sequences(*kept) == raw_sequences(*dropped) == {1: [10, 10, 20], 2: [30]}


def test_the_duplicates_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="duplicates"):
        parse_options(PreprocessOptions, {"duplicates": "merge"}, owner="section 'preprocess'")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_rating_that_is_not_finite_is_an_error(bad: float) -> None:
    data = events([(1, 10, 1, 4.0), (1, 20, 2, bad)])
    with pytest.raises(DataError, match="1 ratings that are not finite numbers"):
        preprocess(data, NO_FILTERS, dataset="mine")
