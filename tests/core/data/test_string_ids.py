"""String user and item ids: given as strings or as codes with an id table, they become
the same dense integers, and the raw ids are kept; integer ids are coded as before."""

from __future__ import annotations

import numpy as np
import pytest

from recbench.data.interactions import Interactions
from recbench.data.preprocess import PreprocessOptions, preprocess

KEEP_ALL = PreprocessOptions(min_item_pop=1, min_user_activity=1)
USERS = ["bob", "alice", "bob", "alice", "carol", "bob"]
ITEMS = ["emma", "dune", "dune", "ulysses", "emma", "ulysses"]
TIMES = [5, 3, 1, 4, 2, 3]


def coded(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes in order of first appearance, and the id table (not sorted)."""
    table = list(dict.fromkeys(values))
    return np.array([table.index(v) for v in values]), np.array(table)


def representations() -> list[Interactions]:
    user_codes, user_table = coded(USERS)
    item_codes, item_table = coded(ITEMS)
    times = np.array(TIMES)
    return [
        Interactions(user=np.array(USERS), item=np.array(ITEMS), timestamp=times),
        Interactions(
            user=np.array(USERS, dtype=object), item=np.array(ITEMS, dtype=object), timestamp=times
        ),
        Interactions(
            user=user_codes,
            item=item_codes,
            timestamp=times,
            user_ids=user_table,
            item_ids=item_table,
        ),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["str", "object", "codes+table"])
def test_string_ids_become_dense_integers_in_ascending_id_order(index):
    sequences, item_ids = preprocess(representations()[index], KEEP_ALL)
    assert item_ids.tolist() == ["", "dune", "emma", "ulysses"]
    assert sequences.users.tolist() == ["alice", "bob", "carol"]
    assert sequences.items.dtype == np.int32
    # alice: dune (t3), ulysses (t4); bob: dune (t1), ulysses (t3), emma (t5); carol: emma.
    assert sequences.items.tolist() == [1, 3, 1, 3, 2, 2]
    assert sequences.offsets.tolist() == [0, 2, 5, 6]


def test_integer_ids_keep_their_integer_raw_ids():
    events = Interactions(
        user=np.array([20, 10, 20]), item=np.array([7, 5, 5]), timestamp=np.array([2, 1, 1])
    )
    sequences, item_ids = preprocess(events, KEEP_ALL)
    assert item_ids.dtype == np.int64 and item_ids.tolist() == [-1, 5, 7]
    assert sequences.users.dtype == np.int64 and sequences.users.tolist() == [10, 20]
    assert sequences.items.tolist() == [1, 1, 2]


def test_filters_apply_to_string_ids_as_to_integers():
    options = PreprocessOptions(min_item_pop=2, min_user_activity=2)
    by_text, text_ids = preprocess(representations()[0], options)
    numbers = {name: i for i, name in enumerate(sorted(set(USERS + ITEMS)))}
    by_number, number_ids = preprocess(
        Interactions(
            user=np.array([numbers[u] for u in USERS]),
            item=np.array([numbers[i] for i in ITEMS]),
            timestamp=np.array(TIMES),
        ),
        options,
    )
    assert by_text.items.tolist() == by_number.items.tolist()
    assert by_text.offsets.tolist() == by_number.offsets.tolist()
    assert [numbers[name] for name in text_ids[1:]] == number_ids[1:].tolist()


def test_an_id_table_is_checked():
    with pytest.raises(ValueError, match="integer codes"):
        Interactions(user=np.array(["a"]), item=np.array([0]), user_ids=np.array(["a"]))
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        Interactions(user=np.array([0, 2]), item=np.array([0, 0]), user_ids=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="same id twice"):
        preprocess(
            Interactions(
                user=np.array([0, 1]), item=np.array([0, 0]), user_ids=np.array(["a", "a"])
            ),
            KEEP_ALL,
        )
