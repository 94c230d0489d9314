"""How large a difference a paired test can detect: the minimum detectable difference.

A table that finds no significant difference between two models says little unless it also
says how large a difference its queries could have found. For a paired test of two models
on the same ``n`` queries, with ``s`` the standard deviation of the per-query differences,
the *minimum detectable difference* at two-sided level ``alpha`` and power ``1 - beta`` is,
in the normal approximation (a paired z-test),

    MDD = (z(1 - alpha / 2) + z(1 - beta)) * s / sqrt(n)

with ``z`` the standard normal quantile: a true mean difference of MDD is detected with
probability ``1 - beta`` (the far tail's share of rejections is neglected). With
``alpha = 0.05`` and power 0.8, MDD = 2.80 * s / sqrt(n). It shrinks with the square root
of the number of queries: four times the queries detect half the difference.

The reports' marks use the Wilcoxon signed-rank test; the formula is the paired t/z test's,
an approximation for it: its asymptotic efficiency relative to the t test is 3/pi = 0.955
for normal differences and never below 0.864 for continuous ones (Hodges & Lehmann 1956),
so it needs about as many queries or somewhat more. Like the tests
(:mod:`recbench.stats.significance`), it treats queries as independent.

References
----------
Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences*, 2nd ed.
Hodges, J. L., Lehmann, E. L. (1956). The efficiency of some nonparametric competitors of
the t-test. *Annals of Mathematical Statistics* 27(2).
Sakai, T. (2016). Topic set size design. *Information Retrieval Journal* 19(3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

#: The power the reports state their minimum detectable differences at.
POWER = 0.8


@dataclass(frozen=True)
class DetectableDifference:
    """The minimum detectable difference of a paired comparison.

    Parameters
    ----------
    difference:
        The minimum detectable difference (NaN with fewer than two pairs).
    n:
        The number of paired values (queries).
    sd:
        The sample standard deviation of the paired differences.
    observed:
        Their mean: the observed difference.
    alpha, power:
        The two-sided level and the power it holds for.
    """

    difference: float
    n: int
    sd: float
    observed: float
    alpha: float
    power: float


def minimum_detectable_difference(
    sd_difference: float, n: int, *, alpha: float = 0.05, power: float = POWER
) -> float:
    """``(z(1 - alpha/2) + z(power)) * sd_difference / sqrt(n)`` (see the module docstring).

    Raises
    ------
    ValueError
        ``n < 1``, a negative ``sd_difference``, or ``alpha`` or ``power`` outside (0, 1).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not sd_difference >= 0:
        raise ValueError(f"sd_difference must be non-negative, got {sd_difference}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * sd_difference / math.sqrt(n)


def detectable_difference(
    differences: ArrayLike, *, alpha: float = 0.05, power: float = POWER
) -> DetectableDifference:
    """The minimum detectable difference of paired ``differences`` (float ``[Q]``; NaN
    left out), from their observed standard deviation (``ddof = 1``)."""
    d = np.asarray(differences, dtype=float).ravel()
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n < 2:
        observed = float(d.mean()) if n else math.nan
        return DetectableDifference(math.nan, n, math.nan, observed, alpha, power)
    sd = float(d.std(ddof=1))
    return DetectableDifference(
        difference=minimum_detectable_difference(sd, n, alpha=alpha, power=power),
        n=n,
        sd=sd,
        observed=float(d.mean()),
        alpha=alpha,
        power=power,
    )
