"""The ragged ranges every protocol and ranking builds its index arrays from."""

import numpy as np

from recbench.data.interactions import ragged_indices, ragged_ranges


def test_ragged_ranges_give_each_index_and_its_offset_in_its_range():
    events, offset = ragged_ranges(np.array([10, 3, 7]), np.array([2, 0, 3]))
    assert events.tolist() == [10, 11, 7, 8, 9]
    assert offset.tolist() == [0, 1, 0, 1, 2]
    assert events.dtype == offset.dtype == np.int64
    assert ragged_indices(np.array([10, 3, 7]), np.array([2, 0, 3])).tolist() == events.tolist()


def test_empty_ranges_give_empty_arrays():
    events, offset = ragged_ranges(np.array([4, 5]), np.array([0, 0]))
    assert events.shape == offset.shape == (0,)
    assert ragged_indices(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).shape == (0,)
