"""Paired significance tests over per-query metric values, and multiple-testing corrections.

Two models evaluated on the same queries give paired per-query values (a cell's ``.npz``
arrays, see :mod:`recbench.results`). :func:`paired_test` tests whether their difference is
centred on zero, two-sided:

- ``"wilcoxon"`` (default): the Wilcoxon signed-rank test on the differences
  (:func:`scipy.stats.wilcoxon`, ``zero_method="wilcox"``: queries where both models score
  the same are dropped). No normality is assumed, which suits metrics that are mostly 0/1
  (``sps``, ``hit``) or skewed (``mrr``). When every difference is zero the p-value is 1.
- ``"ttest"``: the paired t-test (:func:`scipy.stats.ttest_rel`). Every difference zero
  gives 1; a constant non-zero difference gives 0; fewer than two pairs give NaN.

Pairs where either value is NaN are left out; with nothing left the p-value is NaN.

**Several seeds.** Each seed re-splits the users, so the queries of two seeds differ and
only values of the same seed are paired. :func:`pooled_paired_test` (and
:func:`pvalues_vs_reference`) takes the per-query differences of every seed that both
models finished, concatenates them, and tests the pooled differences once. Seeds with more
queries weigh more, as they do in a mean over queries. When the seeds share their queries
(a run with a fixed ``split.seed`` re-trains on one split), a query's differences are
first averaged over the seeds (``same_queries``): pooling them would count each query once
per seed as if they were independent queries. A p-value of the pooled test is
about the models *as trained and evaluated over these seeds*; it is not a test over seeds
(with three seeds, such a test could hardly reject anything).

**k folds.** A k-fold run (``split.method=kfold``) has one split per (seed, fold); values
are paired within a (seed, fold), whose test users are the same for every model, and the
differences of every fold and seed are pooled the same way: with one seed the test covers
every user's queries once.

**Users as the unit.** Under the ``iterative`` protocol a user gives many queries, which
are not independent: with ``users`` (the test user of each query, as a run directory
stores it) :func:`pooled_differences` averages a user's differences first and the test
runs over users (after the seeds that share queries are averaged). Without it every
query is a unit and the p-values are optimistic for ``iterative``; ``half-split`` and
``last-item`` give one query per user, so the two agree there. A user who is a test user
under several seeds that re-split the users still counts once per seed.

**Several comparisons.** Comparing many models with one reference inflates the chance of a
false discovery. :func:`holm` (Holm–Bonferroni, controls the family-wise error rate) and
:func:`benjamini_hochberg` (controls the false discovery rate) adjust a family of p-values;
NaN entries stay NaN and are not counted in the family.

References
----------
Wilcoxon, F. (1945). Individual comparisons by ranking methods. *Biometrics Bulletin* 1(6).
Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian
Journal of Statistics* 6(2).
Benjamini, Y., Hochberg, Y. (1995). Controlling the false discovery rate. *Journal of the
Royal Statistical Society B* 57(1).
Sakai, T. (2014). Statistical reform in information retrieval? *SIGIR Forum* 48(1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike

TESTS = ("wilcoxon", "ttest")
CORRECTIONS = ("holm", "benjamini-hochberg", "none")

Test = Literal["wilcoxon", "ttest"]
#: What per-query values are keyed by: a seed, or a (seed, fold) pair in a k-fold run.
Split = TypeVar("Split", bound=Hashable)
Correction = Literal["holm", "benjamini-hochberg", "none"]


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")


def _differences(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``a - b`` over the pairs where neither value is NaN (float ``[Q]``)."""
    aligned = _aligned_differences(a, b)
    return aligned[~np.isnan(aligned)]


def _aligned_differences(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``a - b`` query by query, NaN where either value is NaN (float ``[Q]``)."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"paired values must be one-dimensional arrays, got shapes {x.shape} and {y.shape}"
        )
    if x.shape != y.shape:
        raise ValueError(
            f"paired values must have the same length (one value per query), "
            f"got {len(x)} and {len(y)}"
        )
    return x - y


def difference_test(differences: ArrayLike, test: Test = "wilcoxon") -> float:
    """The two-sided p-value that paired ``differences`` (float ``[Q]``) are centred on 0.

    NaN differences are left out. See the module docstring for the tests and their
    degenerate cases.
    """
    _check_test(test)
    d = np.asarray(differences, dtype=float).ravel()
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan
    if not np.any(d):
        return 1.0  # identical on every query: no evidence of a difference
    from scipy import stats

    if test == "wilcoxon":
        return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):
        return 0.0  # a constant non-zero difference: t is infinite
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def paired_test(a: ArrayLike, b: ArrayLike, test: Test = "wilcoxon") -> float:
    """The two-sided p-value of a paired test between per-query values ``a`` and ``b``.

    Parameters
    ----------
    a, b:
        One value per query (float ``[Q]``), the same queries in the same order.
    test:
        ``"wilcoxon"`` (signed-rank, :func:`scipy.stats.wilcoxon`) or ``"ttest"``
        (:func:`scipy.stats.ttest_rel`).

    Raises
    ------
    ValueError
        When ``a`` and ``b`` differ in length, or ``test`` is unknown.
    """
    return difference_test(_differences(a, b), test)


def pooled_differences(
    a: Mapping[Split, ArrayLike],
    b: Mapping[Split, ArrayLike],
    same_queries: Callable[[Split], Hashable] | None = None,
    users: Mapping[Split, ArrayLike] | None = None,
) -> np.ndarray:
    """The paired per-query differences ``a - b`` pooled over the splits both have.

    ``a`` and ``b`` map a split (a seed, or a (seed, fold) pair of a k-fold run) to its
    per-query values (float ``[Q_split]``): the queries of one split are the same for both,
    in the same order, so values are paired within a split, and the differences of every
    split present in both are concatenated (NaN pairs left out). Empty when the two share
    no split.

    ``same_queries`` names the query set of a split when several splits share one -- the
    seeds of a run with a fixed ``split.seed`` test the same users and only re-train:
    the differences of the splits of one query set are then averaged query by query (over
    the splits where the pair is not NaN) before pooling, so that a query counts once, not
    once per seed. ``None``: every split has queries of its own.

    ``users`` maps a split to the test user of each of its queries (``[Q_split]``): the
    differences of a query set are then averaged user by user (over the user's queries
    whose pair is not NaN), so that the unit of the test is a user -- the queries of one
    user (``iterative`` gives many) are not independent. It must cover every split
    present in both; ``None``: every query is a unit.

    Raises
    ------
    ValueError
        When the arrays of a split, or of the splits of one query set, differ in length,
        or ``users`` lacks a split or differs in length from its values.
    """
    groups: dict[Hashable, list[np.ndarray]] = {}
    group_users: dict[Hashable, np.ndarray] = {}
    for split in [key for key in a if key in b]:
        try:
            differences = _aligned_differences(a[split], b[split])
        except ValueError as exc:
            raise ValueError(f"{_split_name(split)}: {exc}") from None
        # Without shared queries every split is a query set of its own.
        key = split if same_queries is None else same_queries(split)
        group = groups.setdefault(key, [])
        if group and len(group[0]) != len(differences):
            raise ValueError(
                f"{_split_name(split)}: shares its queries with another split but has "
                f"{len(differences)} values against {len(group[0])}"
            )
        group.append(differences)
        if users is not None:
            group_users.setdefault(key, _users_of(users, split, len(differences)))
    parts = []
    for key, group in groups.items():
        means = _nan_mean(np.stack(group), np.arange(len(group[0])))  # over the seeds
        if users is not None:
            _, user_label = np.unique(group_users[key], return_inverse=True)
            means = _nan_mean(means[np.newaxis], user_label)  # over a user's queries
        parts.append(means[~np.isnan(means)])
    return np.concatenate(parts) if parts else np.zeros(0)


def _nan_mean(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The mean of the non-NaN entries of ``values`` (``[S, Q]``) over its rows and the
    columns that share a label of ``columns`` (``[Q]``, labels ``0 .. L - 1``): ``[L]``,
    NaN where a label has no value."""
    present = ~np.isnan(values)
    n_labels = int(columns.max()) + 1 if columns.size else 0
    labels = np.broadcast_to(columns, values.shape).ravel()
    sums = np.bincount(labels, weights=np.where(present, values, 0.0).ravel(), minlength=n_labels)
    counts = np.bincount(labels, weights=present.ravel(), minlength=n_labels)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _users_of(users: Mapping[Split, ArrayLike], split: Split, n_queries: int) -> np.ndarray:
    if split not in users:
        raise ValueError(f"{_split_name(split)}: no test user is known for its queries")
    of_split = np.asarray(users[split]).ravel()
    if len(of_split) != n_queries:
        raise ValueError(
            f"{_split_name(split)}: {len(of_split)} query users for {n_queries} queries"
        )
    return of_split


def _split_name(split: Hashable) -> str:
    if isinstance(split, tuple) and len(split) == 2:
        return f"seed {split[0]}, fold {split[1]}"
    return f"seed {split}"


def pooled_paired_test(
    a: Mapping[Split, ArrayLike],
    b: Mapping[Split, ArrayLike],
    test: Test = "wilcoxon",
    same_queries: Callable[[Split], Hashable] | None = None,
    users: Mapping[Split, ArrayLike] | None = None,
) -> float:
    """The p-value of a paired test pooled over seeds (and folds).

    ``a`` and ``b`` map a seed -- or, in a k-fold run, a (seed, fold) pair -- to its
    per-query values (float ``[Q_split]``). The per-query differences of every split
    present in both are concatenated (:func:`pooled_differences`, which averages the
    splits that share their queries, ``same_queries``, and with ``users`` a user's
    queries) and tested once (see the module docstring). NaN when the two share no
    split.

    Raises
    ------
    ValueError
        When the arrays of a split differ in length, or ``test`` is unknown.
    """
    _check_test(test)
    if not any(key in b for key in a):
        return math.nan
    return difference_test(pooled_differences(a, b, same_queries, users), test)


def _family(pvalues: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p-values must be a one-dimensional array, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    return p, valid


def _adjusted(pvalues: ArrayLike, adjust_sorted: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``pvalues`` adjusted by ``adjust_sorted`` (the valid p-values sorted ascending ->
    their adjusted values, in that order), capped at 1, in the order given; NaN entries
    stay NaN and are not passed on."""
    p, valid = _family(pvalues)
    adjusted = np.full(p.shape, np.nan)
    values = p[valid]
    if values.size == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    result = np.empty(values.size)
    result[order] = np.minimum(adjust_sorted(values[order]), 1.0)
    adjusted[valid] = result
    return adjusted


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (float ``[m]``), in the order given.

    With the ``m`` valid p-values sorted ascending, the ``i``-th (from 1) becomes
    ``max over j <= i of min(1, (m - j + 1) * p_(j))``: rejecting where the adjusted value
    is at most ``alpha`` controls the family-wise error rate at ``alpha``. NaN entries stay
    NaN and do not count in ``m``.
    """

    def step_down(ascending: np.ndarray) -> np.ndarray:
        m = ascending.size
        return np.maximum.accumulate(ascending * (m - np.arange(m)))

    return _adjusted(pvalues, step_down)


def benjamini_hochberg(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values, float ``[m]``), in the order given.

    With the ``m`` valid p-values sorted ascending, the ``i``-th (from 1) becomes
    ``min over j >= i of min(1, m * p_(j) / j)``: rejecting where the adjusted value is at
    most ``alpha`` controls the false discovery rate at ``alpha`` (for independent or
    positively dependent tests). NaN entries stay NaN and do not count in ``m``.
    """

    def step_up(ascending: np.ndarray) -> np.ndarray:
        m = ascending.size
        scaled = ascending * m / np.arange(1, m + 1)
        return np.minimum.accumulate(scaled[::-1])[::-1]

    return _adjusted(pvalues, step_up)


def adjust(pvalues: ArrayLike, correction: Correction = "holm") -> np.ndarray:
    """``pvalues`` adjusted by ``correction`` (``"holm"``, ``"benjamini-hochberg"`` or
    ``"none"``)."""
    if correction == "holm":
        return holm(pvalues)
    if correction == "benjamini-hochberg":
        return benjamini_hochberg(pvalues)
    if correction == "none":
        return _family(pvalues)[0].copy()
    raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")


def pvalues_vs_reference(
    per_query: Mapping[str, Mapping[Split, ArrayLike]],
    reference: str,
    *,
    test: Test = "wilcoxon",
    correction: Correction = "holm",
    same_queries: Callable[[Hashable], Hashable] | None = None,
    users: Mapping[Split, ArrayLike] | None = None,
) -> dict[str, float]:
    """The p-value of every model against ``reference`` on one metric.

    Parameters
    ----------
    per_query:
        ``{model: {seed: values}}``: one metric's per-query values (float ``[Q_seed]``) of
        each model, all on the same dataset and protocol, so that a seed's queries are the
        same for every model.
    reference:
        The model the others are compared with (e.g. the best baseline); a key of
        ``per_query``.
    test:
        ``"wilcoxon"`` or ``"ttest"`` (see :func:`paired_test`); seeds are pooled as in
        :func:`pooled_paired_test`.
    correction:
        How the p-values of the other models, one family, are adjusted: ``"holm"``
        (default), ``"benjamini-hochberg"`` or ``"none"``.
    same_queries:
        The query set of a seed when seeds share their queries (see
        :func:`pooled_differences`); ``None``: each seed has its own.
    users:
        The test user of each query of a seed: a user's queries are averaged first, the
        unit of the test is a user (see :func:`pooled_differences`); ``None``: a query.

    Returns
    -------
    dict
        ``{model: p-value}`` for every model but ``reference``, in the order of
        ``per_query``; NaN where a model shares no seed with the reference (it is then not
        counted in the family).

    Raises
    ------
    ValueError
        When ``reference`` is not in ``per_query``, a seed's arrays differ in length, or
        ``test`` or ``correction`` is unknown.
    """
    if reference not in per_query:
        raise ValueError(
            f"reference model {reference!r} has no per-query values; "
            f"models: {', '.join(map(repr, per_query)) or 'none'}"
        )
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    others = [model for model in per_query if model != reference]
    raw = []
    for model in others:
        try:
            raw.append(
                pooled_paired_test(
                    per_query[model], per_query[reference], test, same_queries, users
                )
            )
        except ValueError as exc:
            raise ValueError(f"{model} vs {reference}: {exc}") from None
    adjusted = adjust(np.asarray(raw, dtype=float), correction)
    return {model: float(value) for model, value in zip(others, adjusted, strict=True)}
