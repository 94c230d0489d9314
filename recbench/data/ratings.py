"""Rating events: the random split of a dataset's rating events, their scale and histories.

The rating task (:mod:`recbench.tasks.rating`) defines the protocol; this module holds
the data it works on: :func:`split_ratings` splits every rating event at random
(seeded) into training, validation and test events, :class:`RatingScale` maps stars to
[0, 1] and back, and :class:`RatingEvents` builds the batches rating models receive,
each event with its user's earlier training events as history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch

from recbench.data.batches import RatingBatch
from recbench.data.interactions import PADDING_ITEM, Sequences
from recbench.errors import ConfigError, DataError


@dataclass(frozen=True)
class RatingOptions:
    """Options of the rating protocol (section ``rating``).

    test:
        Share of all rating events held out for testing, in (0, 1).
    valid:
        Share of the remaining (non-test) events held out for validation (early stopping
        and model selection), in [0, 1); 0: no validation share.
    scale:
        ``min-max``: ``(r - low) / (high - low)``; ``max``: ``r / high`` (``low`` and
        ``high``: the smallest and largest rating of the data).
    clip:
        Clip predictions to [0, 1] before the metrics.
    batch_size:
        Events predicted at once.
    """

    test: float = 0.2
    valid: float = 0.1
    scale: Literal["min-max", "max"] = "min-max"
    clip: bool = True
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 < self.test < 1.0:
            raise ValueError(f"test must be a share in (0, 1), got {self.test}")
        if not 0.0 <= self.valid < 1.0:
            raise ValueError(f"valid must be a share in [0, 1), got {self.valid}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


# -- scale -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingScale:
    """How ratings in stars map to [0, 1] and back (see the module docstring)."""

    method: str
    low: float
    high: float

    @classmethod
    def of(cls, ratings: np.ndarray, method: str = "min-max") -> RatingScale:
        """The scale of ``ratings`` (stars): their smallest and largest value."""
        if len(ratings) == 0:
            raise DataError("there are no ratings to scale")
        low, high = float(np.min(ratings)), float(np.max(ratings))
        if method == "min-max" and high <= low:
            raise DataError(
                f"every rating is {low:g}: there is nothing to predict",
                hint="use a dataset with explicit ratings of several values",
            )
        if method == "max" and high <= 0:
            raise DataError(
                f"the largest rating is {high:g}: ratings cannot be divided by it",
                hint="use -o rating.scale=min-max",
            )
        if method not in ("min-max", "max"):
            raise ConfigError(f"unknown rating scale '{method}'", hint="use min-max or max")
        return cls(method, low, high)

    @property
    def offset(self) -> float:
        return self.low if self.method == "min-max" else 0.0

    @property
    def stars_per_unit(self) -> float:
        """Stars per unit of the [0, 1] scale: what an error is multiplied by."""
        return self.high - self.low if self.method == "min-max" else self.high

    def to_unit(self, stars: np.ndarray) -> np.ndarray:
        """Ratings in stars -> the [0, 1] scale (float32)."""
        return ((np.asarray(stars, np.float64) - self.offset) / self.stars_per_unit).astype(
            np.float32
        )

    def to_stars(self, unit: np.ndarray) -> np.ndarray:
        """Scaled ratings -> stars (float64)."""
        return np.asarray(unit, np.float64) * self.stars_per_unit + self.offset

    def describe(self) -> str:
        low, high = f"{self.low:g}", f"{self.high:g}"
        if self.method == "min-max":
            return f"ratings {low}–{high} scaled as (r − {low}) / {self.stars_per_unit:g}"
        return f"ratings {low}–{high} scaled as r / {high}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "low": self.low,
            "high": self.high,
            "stars_per_unit": self.stars_per_unit,
        }


# -- events and histories ------------------------------------------------------------------


@dataclass(frozen=True)
class RatingHistory:
    """The training events of every user, in chronological order, in CSR form.

    The training events of user row ``u`` are ``offsets[u]:offsets[u + 1]`` of
    ``events`` (int64, their index in the prepared data, ascending), ``items`` (int64)
    and ``ratings`` (float32, scaled). A rating model may read it whole (to train a
    sequence model on each user's training sequence); the histories of single events are
    built from it by :meth:`RatingEvents.batch`.
    """

    offsets: np.ndarray
    events: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def count_before(self, users: np.ndarray, events: np.ndarray) -> np.ndarray:
        """int64: how many training events of ``users[j]`` come before event ``events[j]``."""
        return np.searchsorted(self.events, events, side="left") - self.offsets[users]


@dataclass(frozen=True)
class RatingEvents:
    """A set of rating events (training, validation or test), as models receive them.

    Parameters
    ----------
    events:
        int64 ``[N]``: each event's index in the prepared data (ascending; an event is
        identified by it).
    users:
        int64 ``[N]``: the user row, ``0 .. n_users - 1``.
    items:
        int64 ``[N]``: the item id, ``1 .. n_items``.
    ratings:
        float32 ``[N]``: the rating on the [0, 1] scale.
    timestamps:
        int64 ``[N]`` (unix seconds), or ``None`` when the data has none.
    history:
        The training events of every user (:class:`RatingHistory`): the history of an
        event is its user's training events before it.
    n_users, n_items:
        Sizes of the id spaces (of all the data, not only of these events).
    """

    events: np.ndarray
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None
    history: RatingHistory
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.events)

    @cached_property
    def history_lengths(self) -> np.ndarray:
        """int64 ``[N]``: the number of training events of the user before each event."""
        return self.history.count_before(self.users, self.events)

    @property
    def mean_rating(self) -> float:
        """The mean scaled rating (NaN for no events)."""
        return float(self.ratings.mean(dtype=np.float64)) if len(self) else math.nan

    def select(self, index: np.ndarray) -> RatingEvents:
        """The events at positions ``index`` (ascending), with the same history."""
        index = np.asarray(index, dtype=np.int64)
        return RatingEvents(
            events=self.events[index],
            users=self.users[index],
            items=self.items[index],
            ratings=self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            history=self.history,
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def batch(
        self, index: np.ndarray, max_history: int | None, device: torch.device | str
    ) -> RatingBatch:
        """The model input for the events at positions ``index``.

        Each event's history is its user's training events before it, at most the
        ``max_history`` most recent (``None``: all; 0: none), left-padded with item 0 and
        rating 0 (:class:`recbench.contracts.RatingBatch`).
        """
        index = np.asarray(index, dtype=np.int64)
        users = self.users[index]
        available = self.history_lengths[index]
        lengths = available if max_history is None else np.minimum(available, max_history)
        width = int(lengths.max()) if len(index) else 0
        end = self.history.offsets[users] + available  # exclusive, in the history arrays
        columns = np.arange(width, dtype=np.int64)
        source = end[:, None] - width + columns[None, :]
        is_event = columns[None, :] >= (width - lengths)[:, None]
        gather = np.where(is_event, source, 0)
        if len(self.history.items):
            items = np.where(is_event, self.history.items[gather], PADDING_ITEM)
            ratings = np.where(is_event, self.history.ratings[gather], 0.0)
        else:
            items = np.zeros((len(index), width), dtype=np.int64)
            ratings = np.zeros((len(index), width), dtype=np.float32)

        def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

        return RatingBatch(
            users=tensor(users, torch.int64),
            items=tensor(self.items[index], torch.int64),
            history_items=tensor(items, torch.int64),
            history_ratings=tensor(ratings, torch.float32),
            history_lengths=tensor(lengths, torch.int64),
        )


@dataclass(frozen=True)
class RatingSplit:
    """Training, validation and test rating events of one seed, and their scale."""

    train: RatingEvents
    valid: RatingEvents
    test: RatingEvents
    scale: RatingScale
    options: RatingOptions
    seed: int

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items


def split_ratings(sequences: Sequences, options: RatingOptions, seed: int) -> RatingSplit:
    """Split every rating event of ``sequences`` at random (see the module docstring).

    Deterministic given ``seed``; the scale is that of all the data's ratings.

    Raises
    ------
    ConfigError
        When the data has no ratings, or a set would be empty.
    """
    if sequences.ratings is None:
        raise ConfigError(
            "the rating protocol needs ratings, and this dataset has none",
            where="--dataset",
            hint="use a dataset with explicit ratings, such as ml-100k",
        )
    first, last = int(sequences.offsets[0]), int(sequences.offsets[-1])
    n_events = last - first
    n_test = int(np.floor(options.test * n_events + 0.5))
    n_valid = int(np.floor(options.valid * (n_events - n_test) + 0.5))
    n_train = n_events - n_test - n_valid
    if n_test == 0 or n_train == 0 or (options.valid > 0 and n_valid == 0):
        raise ConfigError(
            f"the rating split of {n_events:,} events leaves a set empty "
            f"(test={options.test:g}, valid={options.valid:g})",
            where="-o rating.test / rating.valid",
            hint="use shares that leave events in training, validation and test",
        )
    permutation = first + np.random.default_rng(seed).permutation(n_events)
    test = np.sort(permutation[:n_test])
    valid = np.sort(permutation[n_test : n_test + n_valid])
    train = np.sort(permutation[n_test + n_valid :])

    scale = RatingScale.of(sequences.ratings[first:last], options.scale)
    scaled = scale.to_unit(sequences.ratings)
    items = sequences.items.astype(np.int64, copy=False)
    user_of_event = np.zeros(len(sequences.items), dtype=np.int64)
    user_of_event[first:last] = np.repeat(
        np.arange(len(sequences), dtype=np.int64), sequences.lengths
    )
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_of_event[train], minlength=len(sequences)), out=offsets[1:])
    history = RatingHistory(
        offsets=offsets, events=train, items=items[train], ratings=scaled[train]
    )

    def events(selected: np.ndarray) -> RatingEvents:
        return RatingEvents(
            events=selected,
            users=user_of_event[selected],
            items=items[selected],
            ratings=scaled[selected],
            timestamps=None if sequences.timestamps is None else sequences.timestamps[selected],
            history=history,
            n_users=len(sequences),
            n_items=int(sequences.n_items),
        )

    return RatingSplit(events(train), events(valid), events(test), scale, options, seed)
