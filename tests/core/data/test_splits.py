"""Train / validation / test splits."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS, build_queries
from recbench.data.splits import SplitOptions, check_given_options, make_split
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


@pytest.mark.parametrize("method", ["users", "kfold"])
def test_a_fixed_split_seed_gives_every_run_seed_the_same_users(method):
    sequences = random_sequences(200)
    fixed = SplitOptions(method=method, seed=5)
    splits = [make_split(sequences, fixed, seed=s) for s in (0, 1, 2)]
    of_five = make_split(sequences, SplitOptions(method=method), seed=5)
    for split in splits:
        for name in ("train", "valid", "test"):
            assert getattr(split, name).users.tolist() == getattr(of_five, name).users.tolist()
    assert "seed" not in SplitOptions().resolved()  # runs before the option keep their keys
    assert fixed.resolved()["seed"] == 5


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


# -- k-fold --------------------------------------------------------------------------------


def kfold_splits(sequences: Sequences, folds: int, seed: int, valid: float = 0.1):
    options = SplitOptions(method="kfold", folds=folds, valid=valid)
    return [make_split(sequences, options, seed, fold) for fold in range(folds)]


def test_kfold_tests_every_user_exactly_once_in_disjoint_folds():
    sequences = random_sequences(23)
    splits = kfold_splits(sequences, folds=5, seed=4)
    test_users = [set(split.test.users.tolist()) for split in splits]
    assert sorted(u for users in test_users for u in users) == sorted(sequences.users.tolist())
    assert sorted(len(users) for users in test_users) == [4, 4, 5, 5, 5]
    for split in splits:
        train, valid, test = (set(s.users.tolist()) for s in (split.train, split.valid, split.test))
        # validation users come from the training folds: never a fold's test user
        assert not (train & valid) and not (train & test) and not (valid & test)
        assert train | valid | test == set(sequences.users.tolist())
        assert len(valid) == 2  # 10% of 23 users, as the users split counts it
        assert split.method == "kfold" and split.protocols == PROTOCOLS
    assert [split.fold for split in splits] == [0, 1, 2, 3, 4]


def test_kfold_folds_follow_the_seed():
    sequences = random_sequences(30)

    def folds(seed: int) -> list[list[int]]:
        return [s.test.users.tolist() for s in kfold_splits(sequences, folds=3, seed=seed)]

    assert folds(1) == folds(1)
    assert folds(1) != folds(2)


def test_kfold_without_validation_and_with_as_many_folds_as_users():
    sequences = random_sequences(4)
    splits = kfold_splits(sequences, folds=4, seed=0, valid=0)
    assert [len(s.test) for s in splits] == [1, 1, 1, 1]
    assert all(len(s.valid) == 0 and len(s.train) == 3 for s in splits)


@pytest.mark.parametrize(
    ("folds", "n_users", "message"),
    [
        (1, 10, "k-fold evaluation needs at least 2 folds, got folds=1"),
        (0, 10, "at least 2 folds"),
        (11, 10, "the kfold split has 11 folds but the data has only 10 users"),
    ],
)
def test_kfold_refuses_too_few_or_too_many_folds(folds, n_users, message):
    with pytest.raises(ConfigError, match=message):
        make_split(random_sequences(n_users), SplitOptions(method="kfold", folds=folds), 0, 0)


def test_kfold_refuses_options_it_cannot_honour():
    kfold = SplitOptions(method="kfold")
    check_given_options(kfold, ["method", "folds", "valid"])
    with pytest.raises(ConfigError, match="split option 'test' does not apply to the kfold"):
        check_given_options(kfold, ["method", "test"])
    with pytest.raises(ConfigError, match="'folds' applies to the kfold split, not 'users'"):
        check_given_options(SplitOptions(), ["folds"])
    with pytest.raises(ConfigError, match="apply to the temporal split, not 'kfold'"):
        SplitOptions(method="kfold", test_days=1)


def test_other_methods_take_no_fold_and_record_no_folds():
    with pytest.raises(ValueError, match="no folds"):
        make_split(random_sequences(10), SplitOptions(), 0, fold=1)
    with pytest.raises(ValueError, match=r"fold must lie in 0\.\.2"):
        make_split(random_sequences(10), SplitOptions(method="kfold", folds=3), 0, fold=3)
    # a run without folds records what it recorded before folds existed (cell keys stay)
    assert "folds" not in SplitOptions().resolved()
    assert SplitOptions(method="kfold", folds=4).resolved()["folds"] == 4
    assert "test" not in SplitOptions(method="kfold").resolved()
