"""The synthetic generator: sizes, determinism, and structure a sequence model can learn."""

from __future__ import annotations

import time

import numpy as np
import pytest
from recbench_datasets.synthetic import (
    PRESETS,
    SyntheticDataset,
    SyntheticOptions,
    generate,
    max_sequence_length,
)

from recbench.config.options import parse_options
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext
from recbench.errors import ConfigError


def options(**values: object) -> SyntheticOptions:
    return parse_options(SyntheticOptions, values, owner="dataset 'synthetic'")


@pytest.fixture(scope="module")
def small() -> Interactions:
    return generate(SyntheticOptions(size="small"))


def lengths_of(data: Interactions) -> np.ndarray:
    return np.bincount(data.user)[1:]


def test_tiny_is_fast_and_has_the_preset_counts() -> None:
    started = time.perf_counter()
    data = generate(SyntheticOptions(size="tiny"))
    assert time.perf_counter() - started < 0.5
    preset = PRESETS["tiny"]
    assert len(data) == preset.n_events
    assert np.unique(data.user).tolist() == list(range(1, preset.n_users + 1))
    assert data.item.min() >= 1 and data.item.max() <= preset.n_items
    assert data.user.dtype == np.int32 and data.item.dtype == np.int32
    assert data.timestamp.dtype == np.int64 and data.rating.dtype == np.float32


def test_same_seed_same_data_other_seed_other_data() -> None:
    first, again = generate(options(size="tiny", seed=3)), generate(options(size="tiny", seed=3))
    for column in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(first, column), getattr(again, column))
    assert not np.array_equal(first.item, generate(options(size="tiny", seed=4)).item)


def test_overrides_replace_the_preset() -> None:
    data = generate(options(size="tiny", n_users=50, n_items=40, n_events=1000, min_length=8))
    assert len(data) == 1000 and np.unique(data.user).size == 50 and data.item.max() <= 40
    assert lengths_of(data).min() >= 8 and lengths_of(data).max() <= max_sequence_length(40)


def test_no_user_repeats_an_item_unless_asked(small: Interactions) -> None:
    def repeated(data: Interactions) -> bool:
        keys = data.user.astype(np.int64) * (int(data.item.max()) + 1) + data.item
        return len(np.unique(keys)) < len(keys)

    assert not repeated(small)
    dense = generate(options(size="tiny", n_events=9000))  # each user has 45 of 100 items
    assert not repeated(dense)
    assert repeated(generate(options(size="tiny", repeats=True)))


def test_timestamps_increase_within_users_with_some_ties(small: Interactions) -> None:
    same_user = small.user[1:] == small.user[:-1]
    steps = np.diff(small.timestamp)[same_user]
    assert steps.min() >= 0
    assert 0.05 < np.mean(steps == 0) < 0.2
    assert small.timestamp.min() >= 946_684_800  # 2000-01-01


def test_lengths_are_heavy_tailed_with_a_minimum(small: Interactions) -> None:
    lengths = lengths_of(small)
    assert lengths.min() >= PRESETS["small"].min_length
    assert lengths.max() > 5 * np.median(lengths)
    assert lengths.mean() > np.median(lengths)


def test_item_popularity_is_skewed(small: Interactions) -> None:
    counts = np.sort(np.bincount(small.item)[1:])[::-1]
    top_tenth = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_tenth > 0.3  # uniform popularity would give 0.1


def test_the_next_item_is_predictable_from_the_current_one(small: Interactions) -> None:
    """A bigram model beats popularity by far on held-out users: there is sequential
    structure to learn."""
    n_items = int(small.item.max()) + 1
    same_user = small.user[1:] == small.user[:-1]
    current, following = small.item[:-1][same_user], small.item[1:][same_user]
    train = (small.user[1:][same_user] % 2) == 0
    bigram = np.zeros((n_items, n_items))
    np.add.at(bigram, (current[train], following[train]), 1)
    popular = np.argsort(-np.bincount(small.item[small.user % 2 == 0], minlength=n_items))[:10]
    top_next = np.argsort(-bigram, axis=1)[:, :10]
    held_out_current, held_out_next = current[~train], following[~train]
    popularity_hits = np.isin(held_out_next, popular).mean()
    bigram_hits = (top_next[held_out_current] == held_out_next[:, None]).any(axis=1).mean()
    assert bigram_hits > 0.3 and bigram_hits > 3 * popularity_hits


def test_ratings_carry_a_user_signal(small: Interactions) -> None:
    assert set(np.unique(small.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    first_half = small.timestamp < np.median(small.timestamp)
    n_users = int(small.user.max()) + 1

    def user_means(mask: np.ndarray) -> np.ndarray:
        total = np.bincount(small.user[mask], weights=small.rating[mask], minlength=n_users)
        return total / np.maximum(np.bincount(small.user[mask], minlength=n_users), 1)

    both = (np.bincount(small.user[first_half], minlength=n_users) >= 10) & (
        np.bincount(small.user[~first_half], minlength=n_users) >= 10
    )
    correlation = np.corrcoef(user_means(first_half)[both], user_means(~first_half)[both])[0, 1]
    assert correlation > 0.3


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"size": "tiny", "n_events": 100}, "n_events must lie between"),
        ({"size": "tiny", "n_events": 10**6}, "n_events must lie between"),
        ({"size": "tiny", "min_length": 60}, "exceeds the longest sequence"),
        ({"follow_probability": 1.5}, "between 0 and 1"),
        ({"n_users": -1}, "positive"),
        ({"size": "huge"}, "must be one of"),
    ],
)
def test_invalid_options_are_config_errors(values: dict, problem: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=problem):
        options(**values)


def test_fingerprint_is_the_generator_version_and_resolved_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = DataContext(data_root=tmp_path, download_root=tmp_path, cache_root=tmp_path)
    tiny = SyntheticDataset(options(size="tiny")).fingerprint(ctx)
    assert tiny.startswith("generator ")
    same_resolution = SyntheticDataset(options(size="tiny", n_users=200))
    assert same_resolution.fingerprint(ctx) == tiny
    assert SyntheticDataset(options(size="tiny", seed=1)).fingerprint(ctx) != tiny
    assert SyntheticDataset.argument_option == "size"


def test_ml1m_size_matches_the_movielens_counts() -> None:
    data = generate(SyntheticOptions(size="ml-1m"))
    assert len(data) == 1_000_209 and np.unique(data.user).size == 6_040
    assert np.unique(data.item).size <= 3_706
