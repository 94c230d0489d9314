"""Summaries of metric values: the mean and its 95% confidence interval, over queries
(or rating events), over the folds of a k-fold seed (pooled queries), and over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The 97.5% quantile of the standard normal distribution.
_Z_975 = 1.959963984540054


@dataclass(frozen=True)
class MetricSummary:
    """A metric's value over a query set.

    Parameters
    ----------
    mean:
        The mean over queries (per-query metrics) or the corpus value.
    ci95:
        Half-width of the 95% confidence interval of the mean (normal approximation over
        queries); ``None`` for corpus metrics and for fewer than two queries.
    n:
        The number of queries.
    """

    mean: float
    ci95: float | None
    n: int


def summarize(values: np.ndarray) -> MetricSummary:
    """The mean of per-query ``values`` (float ``[Q]``, ``Q >= 1``) and its 95% CI.

    The interval is ``1.96 * s / sqrt(Q)`` with ``s`` the sample standard deviation:
    queries are treated as independent, which understates the uncertainty when a user
    gives many queries (the ``iterative`` protocol).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"summarize needs a non-empty 1-d array, got shape {values.shape}")
    n = len(values)
    ci95 = _Z_975 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    return MetricSummary(mean=float(values.mean()), ci95=ci95, n=n)


def over_seeds(means: Sequence[float], cis: Sequence[float | None]) -> tuple[float, float | None]:
    """The mean of one metric's per-seed ``means`` and its 95% CI half-width.

    With several seeds the half-width is Student t's over seeds,
    ``t(0.975, S - 1) * s / sqrt(S)`` with ``s`` the sample standard deviation of the ``S``
    means; with one seed it is that seed's own half-width ``cis[0]`` (over its queries or
    events), ``None`` when the seed has none.
    """
    if len(means) == 1:
        return float(means[0]), cis[0]
    from scipy import stats

    values = np.asarray(means, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def pool_folds(folds: Sequence[MetricSummary]) -> MetricSummary:
    """One seed's summary of a k-fold run from its ``folds``' summaries.

    The mean is over every query of every fold (each fold weighted by its queries), and
    the interval is :func:`summarize`'s over all of them: with ``n_f``, ``m_f`` and
    ``s_f`` a fold's queries, mean and standard deviation (recovered from its half-width),
    the pooled variance is ``(sum (n_f - 1) s_f^2 + n_f (m_f - m)^2) / (n - 1)``, the same
    as that of the concatenated values. A fold without a half-width (a corpus-level metric,
    or one query) leaves the pooled summary without one: its mean is the folds' mean
    weighted by their queries. One fold is returned as it is.
    """
    if len(folds) == 1:
        return folds[0]
    if not folds:
        raise ValueError("pool_folds needs at least one fold")
    n = np.array([f.n for f in folds], dtype=np.float64)
    means = np.array([f.mean for f in folds], dtype=np.float64)
    total = float(n.sum())
    mean = float((n * means).sum() / total)
    if any(f.ci95 is None for f in folds) or total < 2:
        return MetricSummary(mean=mean, ci95=None, n=int(total))
    sds = np.array([f.ci95 for f in folds], dtype=np.float64) * np.sqrt(n) / _Z_975
    squares = ((n - 1) * sds**2 + n * (means - mean) ** 2).sum()
    ci95 = _Z_975 * math.sqrt(squares / (total - 1)) / math.sqrt(total)
    return MetricSummary(mean=mean, ci95=ci95, n=int(total))
