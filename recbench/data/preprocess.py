"""From raw interactions to chronological per-user sequences.

:func:`preprocess` filters the raw events, orders every user's events by (timestamp,
original row order), remaps item ids to ``1..n_items`` (0 is padding) and builds the CSR
:class:`~recbench.data.interactions.Sequences`. :func:`dataset_statistics` describes the result
for reports. Everything is vectorised: no Python loop runs per user or per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recbench.data.interactions import Interactions, Sequences
from recbench.errors import DataError

#: ``item_ids[0]``: the raw id recorded for the padding item (integer ids).
PADDING_RAW_ID = -1
#: ``item_ids[0]`` when the dataset's item ids are strings.
PADDING_RAW_STRING_ID = ""


@dataclass(frozen=True)
class PreprocessOptions:
    """How raw events are filtered before they become sequences.

    The filters run once, in this order, each on the events the previous one kept:

    0. ``duplicates``: what to do with events that repeat an earlier event's user, item
       and timestamp (data with timestamps only): ``keep`` them (a user then has the
       item twice, so ``eval.exclude_seen=auto`` keeps seen items in the rankings) or
       ``drop`` them (the first one stays). Either way their count is a warning.
    1. ``min_rating``: drop events rated below it (``None`` keeps every event). This is
       the usual conversion of explicit ratings to implicit feedback.
    2. ``min_item_pop``: drop events of items with fewer than this many events.
    3. ``min_user_activity``: drop users with fewer than this many events.

    They are not repeated until nothing changes, so an item can end up with fewer than
    ``min_item_pop`` events once short users are gone (the filter is a single pass, as in
    most published protocols).
    """

    min_rating: float | None = None
    min_user_activity: int = 2
    min_item_pop: int = 5
    duplicates: Literal["keep", "drop"] = "keep"

    def __post_init__(self) -> None:
        if self.min_user_activity < 1:
            raise ValueError(f"min_user_activity must be at least 1, got {self.min_user_activity}")
        if self.min_item_pop < 1:
            raise ValueError(f"min_item_pop must be at least 1, got {self.min_item_pop}")


def preprocess(
    interactions: Interactions,
    options: PreprocessOptions,
    *,
    dataset: str = "",
    warn: Callable[[str], None] | None = None,
) -> tuple[Sequences, np.ndarray]:
    """Filter raw events and build chronological per-user sequences.

    Parameters
    ----------
    interactions:
        Raw events, ``N`` rows (integer or string user and item ids, or codes with an id
        table).
    options:
        The filters (applied in the documented order, one pass).
    dataset:
        The dataset's name, for error messages (``""``: "the dataset").
    warn:
        Called with one line for each problem of usable data (duplicate events).

    Returns
    -------
    sequences:
        One row per remaining user, users in ascending raw-id order (``users`` holds the
        raw ids: ``int64``, or ``str`` for string ids). Each row holds the
        user's item ids (``int32``, ``1..n_items``) ordered by (timestamp, original row
        order); ``timestamps`` (``int64``) and ``ratings`` (``float32``) are aligned with
        the items when the raw data has them. ``offsets`` is ``int64``.
    item_ids:
        ``[n_items + 1]``: ``item_ids[i]`` is the raw id of item ``i``. For integer ids it
        is ``int64`` and ``item_ids[0]`` is ``-1`` (padding); for string ids it is ``str``
        and ``item_ids[0]`` is ``""``. Items are numbered in ascending raw-id order.

    Raises
    ------
    DataError
        When there are no events, when a rating is not a finite number, when
        ``min_rating`` is set but the data has no ratings, or when the filters leave
        nothing.
    """
    if len(interactions) == 0:
        raise DataError(f"{_label(dataset)} has no events", hint="check the data files")
    _check_ratings(interactions, dataset)
    user_codes, raw_users = _raw_id_codes(interactions.user, interactions.user_ids)
    item_codes, raw_items = _raw_id_codes(interactions.item, interactions.item_ids)
    timestamps = None if interactions.timestamp is None else np.asarray(interactions.timestamp)
    # (user, timestamp, row) order of every raw event; the filters keep it
    chronological = None if timestamps is None else _chronological_order(user_codes, timestamps)

    keep = None
    if chronological is not None and timestamps is not None:
        duplicate = _duplicate_events(chronological, user_codes, item_codes, timestamps)
        if duplicate is not None:
            _warn_duplicates(int(duplicate.sum()), options, warn)
            if options.duplicates == "drop":
                keep = ~duplicate
    rating_keep = _rating_filter(interactions, options, dataset)
    if rating_keep is not None:
        keep = rating_keep if keep is None else keep & rating_keep
    item_counts = np.bincount(
        item_codes if keep is None else item_codes[keep], minlength=len(raw_items)
    )
    popular_item = item_counts >= options.min_item_pop
    if not popular_item.all():
        keep = popular_item[item_codes] if keep is None else keep & popular_item[item_codes]
    user_counts = np.bincount(
        user_codes if keep is None else user_codes[keep], minlength=len(raw_users)
    )
    active_user = user_counts >= options.min_user_activity
    if not active_user.all():
        keep = active_user[user_codes] if keep is None else keep & active_user[user_codes]

    rows = None if keep is None else np.flatnonzero(keep)
    if rows is not None and len(rows) == 0:
        raise _nothing_left(dataset, options)

    kept_users = user_codes if rows is None else user_codes[rows]
    user_counts = np.bincount(kept_users, minlength=len(raw_users))
    if chronological is None:
        order = _chronological_order(kept_users, None)
        source_rows = order if rows is None else rows[order]
        del order
    else:
        source_rows = chronological if keep is None else chronological[keep[chronological]]
    del kept_users, rows, keep, chronological

    kept_items = item_codes[source_rows]
    remaining_items = np.bincount(kept_items, minlength=len(raw_items)) > 0
    new_item_id = np.zeros(len(raw_items), dtype=np.int32)
    new_item_id[remaining_items] = np.arange(1, int(remaining_items.sum()) + 1, dtype=np.int32)
    items = new_item_id[kept_items]
    del kept_items

    remaining_users = user_counts > 0
    offsets = np.zeros(int(remaining_users.sum()) + 1, dtype=np.int64)
    np.cumsum(user_counts[remaining_users], out=offsets[1:])

    ratings = None
    if interactions.rating is not None:
        ratings = np.asarray(interactions.rating)[source_rows].astype(np.float32, copy=False)
    sorted_timestamps = None
    if timestamps is not None:
        sorted_timestamps = timestamps[source_rows].astype(np.int64, copy=False)

    if np.issubdtype(raw_items.dtype, np.integer):
        item_ids = np.concatenate(([PADDING_RAW_ID], raw_items[remaining_items])).astype(np.int64)
    else:
        item_ids = np.concatenate(([PADDING_RAW_STRING_ID], raw_items[remaining_items]))
    users = raw_users[remaining_users]
    sequences = Sequences(
        offsets=offsets,
        items=items,
        users=users.astype(np.int64, copy=False)
        if np.issubdtype(users.dtype, np.integer)
        else users,
        n_items=len(item_ids) - 1,
        timestamps=sorted_timestamps,
        ratings=ratings,
    )
    return sequences, item_ids


def _check_ratings(interactions: Interactions, dataset: str) -> None:
    if interactions.rating is None:
        return
    finite = np.isfinite(np.asarray(interactions.rating))
    if not finite.all():
        raise DataError(
            f"{_label(dataset)} has {int((~finite).sum()):,} ratings that are not finite "
            f"numbers (NaN or infinite), the first at row {int(np.argmin(finite))}",
            hint="fix or remove those events in the data",
        )


def _duplicate_events(
    chronological: np.ndarray,
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    timestamps: np.ndarray,
) -> np.ndarray | None:
    """Which rows repeat an earlier row's (user, item, timestamp), as a mask over the rows
    (``None``: none do). ``chronological`` orders the rows by (user, timestamp, row)."""
    users, times = user_codes[chronological], timestamps[chronological]
    same = (users[1:] == users[:-1]) & (times[1:] == times[:-1])
    del users, times
    if not same.any():
        return None
    group_start = np.ones(len(chronological), dtype=bool)
    group_start[1:] = ~same
    group = np.cumsum(group_start, dtype=np.int64) - 1
    in_tie = np.zeros(len(chronological), dtype=bool)
    in_tie[1:] |= same
    in_tie[:-1] |= same
    positions = np.flatnonzero(in_tie)  # rows sharing their user and timestamp with another
    key = group[positions] * (int(item_codes.max()) + 1) + item_codes[chronological[positions]]
    by_key = np.argsort(key, kind="stable")  # equal keys keep the row order: first is kept
    repeated = np.zeros(len(positions), dtype=bool)
    repeated[1:] = key[by_key][1:] == key[by_key][:-1]
    if not repeated.any():
        return None
    duplicate = np.zeros(len(chronological), dtype=bool)
    duplicate[chronological[positions[by_key[repeated]]]] = True
    return duplicate


def _warn_duplicates(
    count: int, options: PreprocessOptions, warn: Callable[[str], None] | None
) -> None:
    if warn is None:
        return
    events = "event" if count == 1 else "events"
    what = f"{count:,} duplicate {events} (same user, item and timestamp as an earlier event)"
    if options.duplicates == "drop":
        warn(f"{what} dropped (preprocess.duplicates=drop)")
    else:
        warn(
            f"{what} kept (preprocess.duplicates=keep): a user with an item twice turns "
            "seen-item exclusion off under eval.exclude_seen=auto; "
            "-o preprocess.duplicates=drop removes them"
        )


def _rating_filter(
    interactions: Interactions, options: PreprocessOptions, dataset: str
) -> np.ndarray | None:
    if options.min_rating is None:
        return None
    if interactions.rating is None:
        raise DataError(
            f"{_label(dataset)} has no ratings, so min_rating={options.min_rating} cannot apply",
            where="option preprocess.min_rating",
            hint="unset preprocess.min_rating",
        )
    return np.asarray(interactions.rating) >= options.min_rating


def _nothing_left(dataset: str, options: PreprocessOptions) -> DataError:
    filters = f"min_item_pop={options.min_item_pop}, min_user_activity={options.min_user_activity}"
    if options.min_rating is not None:
        filters = f"min_rating={options.min_rating}, " + filters
    return DataError(
        f"{_label(dataset)} has no users or items left after filtering ({filters})",
        where="options preprocess.*",
        hint="lower preprocess.min_item_pop or preprocess.min_user_activity"
        + (" or preprocess.min_rating" if options.min_rating is not None else ""),
    )


def _label(dataset: str) -> str:
    return f"dataset '{dataset}'" if dataset else "the dataset"


def _raw_id_codes(ids: np.ndarray, table: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``0..K-1`` of raw ids and the sorted distinct raw ids: integer ids as
    :func:`_dense_codes` codes them; string ids (a ``str`` or ``object`` array, or codes
    into the id ``table``) are numbered in ascending string order."""
    if table is not None:
        table = np.asarray(table).astype(str)
        order = np.argsort(table, kind="stable")
        distinct = table[order]
        if len(distinct) > 1 and bool(np.any(distinct[1:] == distinct[:-1])):
            raise ValueError("an id table holds the same id twice")
        rank = np.empty(len(table), dtype=np.int64)
        rank[order] = np.arange(len(table))
        return rank[np.asarray(ids)], distinct
    ids = np.asarray(ids)
    if ids.dtype.kind in "USO":
        distinct, codes = np.unique(ids.astype(str), return_inverse=True)
        return codes.reshape(-1), distinct
    return _dense_codes(ids)


def _dense_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``0..K-1`` of integer ids and the sorted distinct ids (``codes[i]`` is the
    position of ``ids[i]`` among them). Uses a lookup table when the id range is compact
    (MovieLens, synthetic data), a sort otherwise."""
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    low, high = int(ids.min()), int(ids.max())
    span = high - low + 1
    if span > max(4 * len(ids), 1 << 20):
        distinct, codes = np.unique(ids, return_inverse=True)
        return codes.astype(np.int32 if len(distinct) < 2**31 else np.int64), distinct
    shifted = ids - low if low != 0 else ids
    present = np.zeros(span, dtype=bool)
    present[shifted] = True
    distinct = np.flatnonzero(present) + low
    code_of = (
        np.cumsum(present, dtype=np.int32) - 1 if len(distinct) < 2**31 else np.cumsum(present) - 1
    )
    return code_of[shifted], distinct.astype(ids.dtype, copy=False)


def _chronological_order(users: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """Stable order of events by (user code, timestamp); ties keep the row order."""
    if timestamps is None:
        return np.argsort(users, kind="stable")
    if not np.issubdtype(timestamps.dtype, np.integer):
        return np.lexsort((timestamps, users))
    earliest = int(timestamps.min())
    span = int(timestamps.max()) - earliest + 1
    n_users = int(users.max()) + 1
    if n_users * span < 2**62:  # one int64 key: faster than a two-key lexsort
        key = users.astype(np.int64) * span
        key += timestamps
        key -= earliest
        return np.argsort(key, kind="stable")
    return np.lexsort((timestamps, users))


def dataset_statistics(sequences: Sequences, raw_events: int) -> dict[str, Any]:
    """Facts about prepared sequences, for reports (JSON-friendly).

    Parameters
    ----------
    sequences:
        The preprocessed sequences.
    raw_events:
        The number of events before filtering.

    Returns
    -------
    dict
        ``users``, ``items``, ``events``, ``raw_events``, ``density`` (events / (users x
        items)), ``sequence_length`` (``min``, ``p25``, ``median``, ``p75``, ``max``,
        ``mean``), ``same_timestamp_share`` (share of events whose timestamp equals the
        previous event's of the same user; ``None`` without timestamps), ``has_repeats``
        (some user has an item twice), ``has_timestamps``, ``has_ratings``.
    """
    lengths = sequences.lengths
    events = sequences.n_events
    users, items = len(sequences), sequences.n_items
    p25, median, p75 = np.percentile(lengths, [25, 50, 75]) if users else (0.0, 0.0, 0.0)
    return {
        "users": users,
        "items": items,
        "events": events,
        "raw_events": int(raw_events),
        "density": events / (users * items) if users and items else 0.0,
        "sequence_length": {
            "min": int(lengths.min()) if users else 0,
            "p25": float(p25),
            "median": float(median),
            "p75": float(p75),
            "max": int(lengths.max()) if users else 0,
            "mean": events / users if users else 0.0,
        },
        "same_timestamp_share": _same_timestamp_share(sequences),
        "has_repeats": _has_repeats(sequences),
        "has_timestamps": sequences.timestamps is not None,
        "has_ratings": sequences.ratings is not None,
    }


def _same_timestamp_share(sequences: Sequences) -> float | None:
    if sequences.timestamps is None:
        return None
    events = sequences.n_events
    if events == 0:
        return 0.0
    timestamps = sequences.timestamps[sequences.offsets[0] : sequences.offsets[-1]]
    same_as_previous = np.zeros(events, dtype=bool)
    np.equal(timestamps[1:], timestamps[:-1], out=same_as_previous[1:])
    row_starts = sequences.offsets[:-1] - sequences.offsets[0]
    same_as_previous[row_starts[row_starts < events]] = (
        False  # a user's first event has no previous
    )
    return float(same_as_previous.sum()) / events


def _has_repeats(sequences: Sequences) -> bool:
    if sequences.n_events == 0:
        return False
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    keys = rows * (sequences.n_items + 1)
    del rows
    keys += sequences.items[sequences.offsets[0] : sequences.offsets[-1]]
    keys.sort()
    return bool(np.any(keys[1:] == keys[:-1]))
