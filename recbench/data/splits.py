"""Train / validation / test splits of per-user sequences.

Four methods, chosen by :class:`SplitOptions`:

``users`` (default)
    A seeded random permutation of the users; validation and test users are held out
    entirely (their whole sequences are in ``valid`` / ``test``), training holds the rest.
``kfold``
    User k-fold cross-validation: a seeded random permutation of the users is cut into
    ``folds`` folds of equal size (sizes differ by at most one user). Fold ``f`` gives
    one split: its users are the test users, and the other folds' users are split as the
    ``users`` method splits the non-test users: the first ``valid`` of them, taken from
    the folds after ``f`` (wrapping around), are the validation users, the rest are
    training users. Across the ``folds`` splits of a seed every user is a test user
    exactly once, so the test queries of all folds together are every user's queries.
``temporal``
    A global time cut. Users are ordered by the time of their last event; the latest ones
    become test users, the next latest validation users, and training holds the users
    whose last event is before both cuts. Every training event therefore happens before
    every cut: nothing from the future leaks into training.

    With ``test_days`` the cuts are placed in time instead, as in session-based
    evaluation (Hidasi et al. 2016; Ludewig & Jannach 2018): the sequences (sessions)
    whose last event lies within ``test_days`` days of the last event of the data are the
    test set, those ending in the ``valid_days`` days before that the validation set. In
    the held-out sets, events of items that never occur in training are removed and
    sequences left with fewer than 2 events are dropped (a model cannot recommend an item
    it never saw, and such a sequence gives no query).
``leave-last-out``
    Every user stays in training without their last two items; ``valid`` holds the
    sequences without their last item and ``test`` the full sequences, so that the
    ``last-item`` protocol evaluates the second-to-last item on ``valid`` and the last
    item on ``test``. Only the ``last-item`` protocol is meaningful with it. Users with
    fewer than 3 items are not evaluated and stay whole in training; with ``valid = 0``
    only the last item is held out (and users need 2 items).

Sizes (``valid`` and ``test``) are numbers of users: a value below 1 is a fraction of all
users (rounded to the nearest count), a value of 1 or more is a count. ``valid = 0`` means
"no validation set": ``valid`` is then empty and model selection is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS
from recbench.errors import ConfigError, close_matches

SplitMethod = Literal["users", "kfold", "temporal", "leave-last-out"]
SPLIT_METHODS: tuple[str, ...] = get_args(SplitMethod)


@dataclass(frozen=True)
class SplitOptions:
    """How to split users into training, validation and test sets.

    Parameters
    ----------
    method:
        ``"users"``, ``"kfold"``, ``"temporal"`` or ``"leave-last-out"`` (see
        :mod:`recbench.data.splits`).
    valid, test:
        Number of validation / test users: a value below 1 is a fraction of all users, a
        value of 1 or more a count (a whole number). ``valid = 0`` means no validation
        set. For ``temporal`` the cuts are placed so that these many users (by the time
        of their last event) fall after them; users tied at a cut all go to the later
        set. ``leave-last-out`` ignores ``test`` (every user with at least 3 items is
        tested) and reads ``valid`` only to tell whether there is a validation set;
        ``kfold`` ignores ``test`` (a fold is the test set; a run refuses ``test`` with
        ``kfold``, :func:`check_given_options`).
    folds:
        Only for ``kfold``: the number of folds, at least 2 and at most the number of
        users. Each seed gives ``folds`` splits (:func:`make_split`'s ``fold``).
    test_days, valid_days:
        Only for ``temporal``: when ``test_days > 0`` the test set is the sequences whose
        last event is at most ``test_days`` days (of 86,400 s) before the data's last
        event, and the validation set those ending in the ``valid_days`` days before
        that (0: no validation set); ``valid`` and ``test`` are then ignored.
    seed:
        The seed of the user permutation of ``users`` and ``kfold`` (the other methods
        are not random). ``None`` (the default): each run seed splits with its own value,
        so every seed re-splits the users and re-trains. A number: every run seed tests
        the users of that one split and only re-trains, which keeps a tune's validation
        and training users (drawn from the training users of the split it tuned on, see
        :mod:`recbench.tuning`) apart from the test users of every seed.
    """

    method: SplitMethod = "users"
    valid: float = 0.1
    test: float = 0.1
    test_days: float = 0.0
    valid_days: float = 0.0
    folds: int = 5
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ConfigError(
                f"unknown split method '{self.method}'",
                where="split option 'method'",
                hint=close_matches(self.method, SPLIT_METHODS),
            )
        for name in ("valid", "test"):
            value = getattr(self, name)
            if not value >= 0 or (value >= 1 and not float(value).is_integer()):
                raise ConfigError(
                    f"split size {name}={value} is neither a fraction below 1 nor a whole count",
                    where=f"split option '{name}'",
                    hint="use a fraction of users such as 0.1, or a number of users such as 500",
                )
        for name in ("test_days", "valid_days"):
            if not getattr(self, name) >= 0:
                raise ConfigError(
                    f"split option {name}={getattr(self, name)} is negative",
                    where=f"split option '{name}'",
                    hint="use a number of days such as 1",
                )
        if (self.test_days > 0 or self.valid_days > 0) and self.method != "temporal":
            raise ConfigError(
                f"test_days and valid_days apply to the temporal split, not '{self.method}'",
                where="split option 'method'",
                hint="set split.method=temporal, or leave test_days and valid_days at 0",
            )
        if self.method == "kfold" and self.folds < 2:
            raise ConfigError(
                f"k-fold evaluation needs at least 2 folds, got folds={self.folds}",
                where="split option 'folds'",
                hint="use split.folds=5 (every user is tested once across the folds)",
            )
        if self.valid_days > 0 and self.test_days == 0:
            raise ConfigError(
                "valid_days needs test_days",
                where="split option 'test_days'",
                hint="set split.test_days as well, e.g. split.test_days=1",
            )

    @property
    def n_folds(self) -> int:
        """How many splits a seed gives: ``folds`` for ``kfold``, else 1."""
        return self.folds if self.method == "kfold" else 1

    def resolved(self) -> dict[str, Any]:
        """The options as a run records them (its configuration and its cells' keys):
        every field, but ``folds`` only for ``kfold`` (so that the other methods record
        what they recorded before folds existed), ``test`` not for ``kfold`` (which
        ignores it) and ``seed`` only when set (runs that split with each run seed record
        what they recorded before the option existed)."""
        values = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
        }
        del values["test" if self.method == "kfold" else "folds"]
        if self.seed is None:
            del values["seed"]
        return values


def check_given_options(options: SplitOptions, given: Iterable[str]) -> None:
    """Refuse split options that were ``given`` but that ``options.method`` cannot honour:
    ``test`` with ``kfold`` (the test users are a fold), ``folds`` without it.

    Raises
    ------
    ConfigError
        Naming the option and what to do instead.
    """
    given = set(given)
    if options.method == "kfold" and "test" in given:
        raise ConfigError(
            "split option 'test' does not apply to the kfold split (each fold is the test set)",
            where="split option 'test'",
            hint=f"leave 'test' out; the test users are 1/{options.folds} of the users per fold "
            "(set split.folds)",
        )
    if options.method != "kfold" and "folds" in given:
        raise ConfigError(
            f"split option 'folds' applies to the kfold split, not '{options.method}'",
            where="split option 'folds'",
            hint="set split.method=kfold as well, or leave 'folds' out",
        )


def check_folds(options: SplitOptions, n_users: int) -> None:
    """Refuse more folds than users (a fold would hold no test user).

    Raises
    ------
    ConfigError
        When ``options`` is ``kfold`` with ``folds > n_users``.
    """
    if options.method == "kfold" and options.folds > n_users:
        raise ConfigError(
            f"the kfold split has {options.folds} folds but the data has only {n_users:,} users",
            where="split option 'folds'",
            hint=f"use at most {n_users:,} folds (each fold needs a test user)",
        )


@dataclass(frozen=True)
class Split:
    """Training, validation and test sequences, and the protocols they support.

    ``valid`` may hold no users (no validation set: no model selection). ``protocols``
    lists the evaluation protocols (:data:`recbench.data.protocols.PROTOCOLS`) that are valid
    on this split. ``fold`` is the fold of a ``kfold`` split (``None`` for the other
    methods).
    """

    method: str
    train: Sequences
    valid: Sequences
    test: Sequences
    protocols: tuple[str, ...]
    fold: int | None = None


def make_split(
    sequences: Sequences, options: SplitOptions, seed: int, fold: int | None = None
) -> Split:
    """Split ``sequences`` as ``options`` say; deterministic given ``seed`` (and ``fold``).

    Parameters
    ----------
    sequences:
        Chronological per-user sequences (one row per user).
    options:
        The method and the validation / test sizes.
    seed:
        Seeds the user permutation of the ``users`` and ``kfold`` methods (the other
        methods are not random), unless ``options.seed`` fixes it.
    fold:
        Which fold of a ``kfold`` split is the test set, ``0 <= fold < options.folds``
        (``None``: fold 0). The other methods take no fold.

    Raises
    ------
    ConfigError
        When a set would be empty (sizes too large for the number of users), ``kfold``
        has more folds than users, or the ``temporal`` method is asked for data without
        timestamps.
    ValueError
        A ``fold`` out of range, or given to a method without folds.
    """
    if options.seed is not None:
        seed = options.seed
    if options.method == "kfold":
        return _split_kfold(sequences, options, seed, 0 if fold is None else fold)
    if fold is not None:
        raise ValueError(f"the {options.method} split has no folds, got fold={fold}")
    if options.method == "users":
        return _split_users(sequences, options, seed)
    if options.method == "temporal":
        if options.test_days > 0:
            return _split_days(sequences, options)
        return _split_temporal(sequences, options)
    return _split_leave_last_out(sequences, options)


def _user_count(options: SplitOptions, name: str, n_users: int) -> int:
    value = float(getattr(options, name))
    if value < 1:
        return int(np.floor(value * n_users + 0.5))
    return int(value)


def _check_not_empty(
    name: str, n_selected: int, n_users: int, options: SplitOptions, hint: str
) -> None:
    if n_selected == 0:
        sizes = f"folds={options.folds}" if options.method == "kfold" else f"test={options.test:g}"
        raise ConfigError(
            f"the {options.method} split leaves the {name} set empty "
            f"({n_users} users, valid={options.valid:g}, {sizes})",
            where="split options",
            hint=hint,
        )


def _check_sizes(
    options: SplitOptions, n_users: int, n_train: int, n_valid: int, n_test: int
) -> None:
    _check_not_empty(
        "test", n_test, n_users, options, "raise 'test' (a fraction below 1 or a user count)"
    )
    if options.valid > 0:
        _check_not_empty(
            "validation",
            n_valid,
            n_users,
            options,
            "raise 'valid', or set valid=0 for no validation set",
        )
    _check_not_empty(
        "training", n_train, n_users, options, "lower 'valid' and 'test' so that users remain"
    )


def _split_users(sequences: Sequences, options: SplitOptions, seed: int) -> Split:
    n_users = len(sequences)
    n_test = min(_user_count(options, "test", n_users), n_users)
    n_valid = min(_user_count(options, "valid", n_users), n_users - n_test)
    n_train = n_users - n_test - n_valid
    _check_sizes(options, n_users, n_train, n_valid, n_test)
    permutation = np.random.default_rng(seed).permutation(n_users)
    test_rows = np.sort(permutation[:n_test])
    valid_rows = np.sort(permutation[n_test : n_test + n_valid])
    train_rows = np.sort(permutation[n_test + n_valid :])
    return Split(
        method="users",
        train=sequences.select(train_rows),
        valid=sequences.select(valid_rows),
        test=sequences.select(test_rows),
        protocols=PROTOCOLS,
    )


def _split_kfold(sequences: Sequences, options: SplitOptions, seed: int, fold: int) -> Split:
    """Fold ``fold`` of the seeded user k-fold split: see :class:`SplitOptions`."""
    if not 0 <= fold < options.folds:
        raise ValueError(f"fold must lie in 0..{options.folds - 1}, got {fold}")
    n_users = len(sequences)
    check_folds(options, n_users)
    folds = np.array_split(np.random.default_rng(seed).permutation(n_users), options.folds)
    test_rows = np.sort(folds[fold])
    others = np.concatenate(folds[fold + 1 :] + folds[:fold])
    n_valid = min(_user_count(options, "valid", n_users), len(others))
    valid_rows = np.sort(others[:n_valid])
    train_rows = np.sort(others[n_valid:])
    _check_sizes(options, n_users, len(train_rows), len(valid_rows), len(test_rows))
    return Split(
        method="kfold",
        train=sequences.select(train_rows),
        valid=sequences.select(valid_rows),
        test=sequences.select(test_rows),
        protocols=PROTOCOLS,
        fold=fold,
    )


def _split_temporal(sequences: Sequences, options: SplitOptions) -> Split:
    if sequences.timestamps is None:
        raise ConfigError(
            "the temporal split needs timestamps, and this dataset has none",
            where="split option 'method'",
            hint="choose the 'users' or 'leave-last-out' split",
        )
    n_users = len(sequences)
    n_test = min(_user_count(options, "test", n_users), n_users)
    n_valid = min(_user_count(options, "valid", n_users), n_users - n_test)
    # Sequences are chronological: a user's last event is the last of the row. Users
    # without events carry no information and stay in training.
    with_events = np.flatnonzero(sequences.lengths > 0)
    last_time = sequences.timestamps[sequences.offsets[with_events + 1] - 1]
    is_test = np.zeros(n_users, dtype=bool)
    is_test[with_events] = _latest_users(last_time, n_test)
    before_test = ~is_test[with_events]
    is_valid = np.zeros(n_users, dtype=bool)
    is_valid[with_events[before_test]] = _latest_users(last_time[before_test], n_valid)
    is_train = ~is_test & ~is_valid
    _check_sizes(options, n_users, int(is_train.sum()), int(is_valid.sum()), int(is_test.sum()))
    return Split(
        method="temporal",
        train=sequences.select(np.flatnonzero(is_train)),
        valid=sequences.select(np.flatnonzero(is_valid)),
        test=sequences.select(np.flatnonzero(is_test)),
        protocols=PROTOCOLS,
    )


SECONDS_PER_DAY = 86_400


def _split_days(sequences: Sequences, options: SplitOptions) -> Split:
    """Session-based temporal split: see :class:`SplitOptions` (``test_days``)."""
    if sequences.timestamps is None:
        raise ConfigError(
            "the temporal split needs timestamps, and this dataset has none",
            where="split option 'method'",
            hint="choose the 'users' or 'leave-last-out' split",
        )
    with_events = np.flatnonzero(sequences.lengths > 0)
    last_time = np.full(len(sequences), np.iinfo(np.int64).min, dtype=np.int64)
    last_time[with_events] = sequences.timestamps[sequences.offsets[with_events + 1] - 1]
    newest = int(last_time[with_events].max()) if len(with_events) else 0
    test_cut = newest - options.test_days * SECONDS_PER_DAY
    valid_cut = test_cut - options.valid_days * SECONDS_PER_DAY
    is_test = last_time >= test_cut
    is_valid = (
        ~is_test & (last_time >= valid_cut) if options.valid_days > 0 else np.zeros_like(is_test)
    )
    train = sequences.select(np.flatnonzero(~is_test & ~is_valid))
    if train.n_events == 0:
        raise ConfigError(
            f"the temporal split with test_days={options.test_days:g} and "
            f"valid_days={options.valid_days:g} leaves the training set empty",
            where="split options",
            hint="lower test_days or valid_days (the held-out sets are the sequences ending "
            "in the last test_days + valid_days days of the data)",
        )
    known = train.item_counts() > 0
    valid = _known_items_only(sequences.select(np.flatnonzero(is_valid)), known)
    test = _known_items_only(sequences.select(np.flatnonzero(is_test)), known)
    if len(test) == 0:
        raise ConfigError(
            f"the temporal split with test_days={options.test_days:g} leaves the test set "
            "empty (no sequence of 2 or more events of items seen in training ends then)",
            where="split options",
            hint="raise test_days",
        )
    if options.valid_days > 0 and len(valid) == 0:
        raise ConfigError(
            f"the temporal split with valid_days={options.valid_days:g} leaves the "
            "validation set empty",
            where="split options",
            hint="raise valid_days, or set valid_days=0 for no validation set",
        )
    return Split(method="temporal", train=train, valid=valid, test=test, protocols=PROTOCOLS)


def _known_items_only(sequences: Sequences, known: np.ndarray) -> Sequences:
    """``sequences`` without the events of items not ``known``, and without the rows left
    with fewer than 2 events."""
    events = np.arange(sequences.offsets[0], sequences.offsets[-1])
    keep = known[sequences.items[events]]
    row = np.repeat(np.arange(len(sequences)), sequences.lengths)
    kept_per_row = np.bincount(row[keep], minlength=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(kept_per_row, out=offsets[1:])
    filtered = Sequences(
        offsets=offsets,
        items=sequences.items[events[keep]],
        users=sequences.users,
        n_items=sequences.n_items,
        timestamps=None if sequences.timestamps is None else sequences.timestamps[events[keep]],
        ratings=None if sequences.ratings is None else sequences.ratings[events[keep]],
    )
    return filtered.select(np.flatnonzero(kept_per_row >= 2))


def _latest_users(last_time: np.ndarray, count: int) -> np.ndarray:
    """Mask of the users at or after a time cut placed at the last-event time of the
    ``count``-th latest user (users tied at the cut are included, so the mask can hold a
    few more than ``count``)."""
    if count == 0:
        return np.zeros(len(last_time), dtype=bool)
    if count >= len(last_time):
        return np.ones(len(last_time), dtype=bool)
    cut = np.partition(last_time, len(last_time) - count)[len(last_time) - count]
    return last_time >= cut


def _split_leave_last_out(sequences: Sequences, options: SplitOptions) -> Split:
    """Users too short to give an evaluation query (fewer than 3 items, or 2 without a
    validation set) are not evaluated; their whole sequences stay in training."""
    lengths = sequences.lengths
    held_out_items = 2 if options.valid > 0 else 1
    evaluated = lengths >= held_out_items + 1
    rows = np.flatnonzero(evaluated)
    train = sequences.truncate(np.where(evaluated, lengths - held_out_items, lengths))
    valid_rows = rows if options.valid > 0 else rows[:0]
    valid = sequences.select(valid_rows)
    valid = valid.truncate(valid.lengths - 1)
    n_users = len(sequences)
    _check_not_empty(
        "test",
        len(rows),
        n_users,
        options,
        f"no user has {held_out_items + 1} or more items; choose the 'users' split",
    )
    return Split(
        method="leave-last-out",
        train=train,
        valid=valid,
        test=sequences.select(rows),
        protocols=("last-item",),
    )
