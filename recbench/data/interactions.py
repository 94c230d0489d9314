"""Interaction data: raw columnar events and per-user sequences in CSR form.

Item ids inside recbench run from 1 to ``n_items``; **0 is padding and is never ranked**.
A user's sequence is ordered by (timestamp, original row order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PADDING_ITEM = 0


@dataclass(frozen=True)
class Interactions:
    """Raw events as parallel columns, as a dataset plugin loads them.

    ``user`` and ``item`` hold the dataset's own ids: integers, or strings (a numpy ``str``
    or ``object`` array of ``str``). A loader that reads string ids one at a time may
    instead give each distinct id an integer code and pass the codes in ``user`` (or
    ``item``) with the id of every code in ``user_ids`` (``item_ids``): ``user_ids[c]`` is
    the id of code ``c``. Preprocessing maps any of these to dense integers; the raw id of
    every item is kept with the prepared data. ``timestamp`` (unix seconds) and ``rating``
    are optional. Row order is kept: it breaks timestamp ties.
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray | None = None
    rating: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "timestamp", "rating"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"column '{name}' has {len(column)} rows, 'user' has {n}")
        for name in ("user", "item"):
            codes, table = getattr(self, name), getattr(self, f"{name}_ids")
            if table is None:
                continue
            if not np.issubdtype(np.asarray(codes).dtype, np.integer):
                raise ValueError(f"'{name}' must hold integer codes when '{name}_ids' is given")
            if len(codes) and (int(np.min(codes)) < 0 or int(np.max(codes)) >= len(table)):
                raise ValueError(
                    f"'{name}' holds a code outside 0..{len(table) - 1} ('{name}_ids')"
                )

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class Sequences:
    """Chronological item sequences of a set of users, in CSR form.

    The sequence of user ``u`` (a row index, ``0 <= u < len(self)``) is
    ``items[offsets[u]:offsets[u + 1]]``; ``timestamps`` and ``ratings`` (optional) are
    aligned with ``items``. ``users`` holds each row's original user id.
    """

    offsets: np.ndarray
    items: np.ndarray
    users: np.ndarray
    n_items: int
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None

    @classmethod
    def from_lists(cls, rows: list[list[int]], n_items: int) -> Sequences:
        """Sequences from one list of item ids per user (users numbered 0, 1, ...).

        Handy for tests and examples: ``Sequences.from_lists([[1, 2, 3], [2, 4]], 4)``.
        """
        lengths = [len(row) for row in rows]
        return cls(
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            items=np.array([item for row in rows for item in row], dtype=np.int64),
            users=np.arange(len(rows), dtype=np.int64),
            n_items=n_items,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, row: int) -> np.ndarray:
        return self.items[self.offsets[row] : self.offsets[row + 1]]

    def item_counts(self) -> np.ndarray:
        """Events per item id, shape ``[n_items + 1]`` (index 0, padding, is 0)."""
        return np.bincount(self.items, minlength=self.n_items + 1).astype(np.int64)

    def select(self, rows: np.ndarray) -> Sequences:
        """The sequences of ``rows`` (row indices, in the given order), as a new CSR."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        gather = ragged_indices(starts, lengths)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Sequences(
            offsets=offsets,
            items=self.items[gather],
            users=self.users[rows],
            n_items=self.n_items,
            timestamps=None if self.timestamps is None else self.timestamps[gather],
            ratings=None if self.ratings is None else self.ratings[gather],
        )

    def truncate(self, keep: np.ndarray) -> Sequences:
        """Keep the first ``keep[u]`` events of every row (rows left empty stay, empty)."""
        keep = np.minimum(np.asarray(keep, dtype=np.int64), self.lengths)
        gather = ragged_indices(self.offsets[:-1], keep)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(keep, out=offsets[1:])
        return Sequences(
            offsets=offsets,
            items=self.items[gather],
            users=self.users,
            n_items=self.n_items,
            timestamps=None if self.timestamps is None else self.timestamps[gather],
            ratings=None if self.ratings is None else self.ratings[gather],
        )


def ragged_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    return ragged_ranges(starts, lengths)[0]


def ragged_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ragged_indices` and, for each index, its offset in its range (``0 .. n - 1``):
    two int64 arrays of length ``sum(lengths)``."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    run_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    offset = np.arange(total, dtype=np.int64) - run_start
    return np.repeat(starts, lengths) + offset, offset
