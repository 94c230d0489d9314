"""Train / validation / test splits."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS, build_queries
from recbench.data.splits import SplitOptions, make_split
from recbench.errors import ConfigError


def sequences_of(
    rows: list[list[int]], n_items: int, timestamps: list[list[int]] | None = None
) -> Sequences:
    lengths = [len(row) for row in rows]
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([item for row in rows for item in row], dtype=np.int64),
        users=np.arange(100, 100 + len(rows), dtype=np.int64),
        n_items=n_items,
        timestamps=None
        if timestamps is None
        else np.array([t for row in timestamps for t in row], dtype=np.int64),
    )


def rows_of(sequences: Sequences) -> dict[int, list[int]]:
    """User id -> item list."""
    return {int(user): sequences.sequence(row).tolist() for row, user in enumerate(sequences.users)}


def random_sequences(n_users: int, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    return sequences_of(
        [list(rng.integers(1, 50, size=rng.integers(1, 12))) for _ in range(n_users)], n_items=50
    )


def test_user_split_holds_out_whole_users_by_fraction():
    sequences = random_sequences(100)
    split = make_split(sequences, SplitOptions(valid=0.2, test=0.1), seed=3)
    assert split.method == "users"
    assert split.protocols == PROTOCOLS
    assert (len(split.train), len(split.valid), len(split.test)) == (70, 20, 10)
    everyone = rows_of(sequences)
    parts = [rows_of(split.train), rows_of(split.valid), rows_of(split.test)]
    assert sum(len(part) for part in parts) == 100
    assert set().union(*parts) == set(everyone)  # disjoint, since the sizes add up
    for part in parts:
        assert all(part[user] == everyone[user] for user in part)  # whole sequences


def test_user_split_by_counts():
    split = make_split(random_sequences(20), SplitOptions(valid=3, test=5), seed=0)
    assert (len(split.train), len(split.valid), len(split.test)) == (12, 3, 5)


def test_user_split_is_deterministic_per_seed():
    sequences = random_sequences(200)
    first = make_split(sequences, SplitOptions(), seed=7)
    again = make_split(sequences, SplitOptions(), seed=7)
    other = make_split(sequences, SplitOptions(), seed=8)
    assert first.test.users.tolist() == again.test.users.tolist()
    assert first.valid.users.tolist() == again.valid.users.tolist()
    assert first.test.users.tolist() != other.test.users.tolist()


def test_valid_zero_means_no_validation_set():
    split = make_split(random_sequences(10), SplitOptions(valid=0, test=2), seed=0)
    assert (len(split.train), len(split.valid), len(split.test)) == (8, 0, 2)
    assert split.valid.n_events == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SplitOptions(valid=0, test=10), "leaves the training set empty"),
        (SplitOptions(valid=4, test=6), "leaves the training set empty"),
        (SplitOptions(valid=0.1, test=0), "leaves the test set empty"),
        (SplitOptions(valid=0.1, test=0.01), "leaves the test set empty"),  # 0.1 users
        (SplitOptions(valid=0.01, test=0.5), "leaves the validation set empty"),
        (SplitOptions(method="temporal", valid=0, test=10), "leaves the training set empty"),
    ],
)
def test_a_split_leaving_a_set_empty_is_a_config_error(options, message):
    sequences = random_sequences(10)
    sequences = Sequences(
        offsets=sequences.offsets,
        items=sequences.items,
        users=sequences.users,
        n_items=sequences.n_items,
        timestamps=np.arange(sequences.n_events),
    )
    with pytest.raises(ConfigError, match=f"{message} \\(10 users"):
        make_split(sequences, options, seed=0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"valid": 1.5}, "neither a fraction below 1 nor a whole count"),
        ({"test": -0.1}, "neither a fraction below 1 nor a whole count"),
        ({"method": "user"}, "unknown split method 'user'.*did you mean 'users'"),
    ],
)
def test_bad_split_options_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        SplitOptions(**values)


def test_temporal_split_cuts_at_the_users_last_events():
    rows = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]]
    # last events: 10, 50, 30, 40, 20, 60
    times = [[1, 10], [5, 50], [2, 30], [35, 40], [3, 20], [8, 60]]
    sequences = sequences_of(rows, n_items=12, timestamps=times)
    split = make_split(sequences, SplitOptions(method="temporal", valid=1, test=2), seed=0)
    assert split.method == "temporal"
    assert split.protocols == PROTOCOLS
    assert split.test.users.tolist() == [101, 105]  # last events 50 and 60
    assert split.valid.users.tolist() == [103]  # last event 40
    assert split.train.users.tolist() == [100, 102, 104]
    # Nothing in training happens after the validation cut.
    assert split.train.timestamps.max() < 40
    assert rows_of(split.test)[101] == [3, 4]  # whole sequences


def test_temporal_split_puts_users_tied_at_the_cut_in_the_later_set():
    rows = [[1], [2], [3], [4]]
    times = [[10], [20], [20], [30]]
    sequences = sequences_of(rows, n_items=4, timestamps=times)
    split = make_split(sequences, SplitOptions(method="temporal", valid=0, test=2), seed=0)
    assert split.test.users.tolist() == [101, 102, 103]  # 3 users: two tied at the cut
    assert split.train.users.tolist() == [100]


def test_temporal_split_fractions_count_users():
    rng = np.random.default_rng(0)
    times = [sorted(rng.choice(10_000, size=3, replace=False).tolist()) for _ in range(100)]
    sequences = sequences_of([[1, 2, 3]] * 100, n_items=3, timestamps=times)
    split = make_split(sequences, SplitOptions(method="temporal", valid=0.2, test=0.1), seed=0)
    assert (len(split.train), len(split.valid), len(split.test)) == (70, 20, 10)
    last = {user: t[-1] for user, t in zip(sequences.users.tolist(), times, strict=True)}
    assert max(last[u] for u in split.train.users) < min(last[u] for u in split.valid.users)
    assert max(last[u] for u in split.valid.users) < min(last[u] for u in split.test.users)


def test_temporal_split_needs_timestamps():
    with pytest.raises(ConfigError, match="needs timestamps"):
        make_split(random_sequences(10), SplitOptions(method="temporal"), seed=0)


def test_leave_last_out_holds_out_the_last_two_items():
    sequences = sequences_of([[1, 2, 3, 4], [5, 6, 7], [8, 9], [10]], n_items=10)
    split = make_split(sequences, SplitOptions(method="leave-last-out"), seed=0)
    assert split.protocols == ("last-item",)
    # Users with fewer than 3 items are not evaluated and stay whole in training.
    assert rows_of(split.train) == {100: [1, 2], 101: [5], 102: [8, 9], 103: [10]}
    assert rows_of(split.valid) == {100: [1, 2, 3], 101: [5, 6]}
    assert rows_of(split.test) == {100: [1, 2, 3, 4], 101: [5, 6, 7]}
    valid = build_queries("last-item", split.valid)
    test = build_queries("last-item", split.test)
    assert valid.input_length.tolist() == [2, 1]  # targets: 3 and 6, second-to-last
    assert test.input_length.tolist() == [3, 2]  # targets: 4 and 7, last


def test_leave_last_out_without_validation_holds_out_only_the_last_item():
    sequences = sequences_of([[1, 2, 3, 4], [5, 6, 7], [8, 9], [10]], n_items=10)
    split = make_split(sequences, SplitOptions(method="leave-last-out", valid=0), seed=0)
    assert rows_of(split.train) == {100: [1, 2, 3], 101: [5, 6], 102: [8], 103: [10]}
    assert len(split.valid) == 0
    assert rows_of(split.test) == {100: [1, 2, 3, 4], 101: [5, 6, 7], 102: [8, 9]}


def test_leave_last_out_with_only_short_users_is_a_config_error():
    sequences = sequences_of([[1, 2], [3]], n_items=3)
    with pytest.raises(ConfigError, match=r"test set empty.*no user has 3 or more items"):
        make_split(sequences, SplitOptions(method="leave-last-out"), seed=0)
