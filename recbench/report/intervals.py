"""A mean and its 95% confidence half-width as a table cell, with the notes that say how
far such an interval can be trusted.

The half-width is shown to two significant digits (at most four decimals) and the mean
to the same decimal place, so a wide interval from few seeds does not look precise
(``0.38 ± 0.95``, not ``0.3750 ± 0.9530``); counts are whole numbers on both sides
(``28 ± 32``). A half-width of zero is printed as ``± 0`` and explained by
:data:`ZERO_NOTE` (every value it was computed from was the same: no spread was observed,
which is not certainty); a Student t interval from two seeds gets :func:`few_seeds_note`.
"""

from __future__ import annotations

import math

#: Decimals of a non-count value without an interval, and the most an interval shows.
DECIMALS = 4
#: Below this many seeds a Student t interval over seeds says little (two seeds: t = 12.7).
MIN_SEEDS_FOR_T = 3

ZERO_NOTE = (
    "± 0: the values the interval comes from (the seeds' means; with one seed, the "
    "queries' values) were all equal, so no spread was observed, which is not certainty."
)


def few_seeds_note(n_seeds: int) -> str:
    """The note under a table whose intervals are Student t over ``n_seeds`` (< 3) seeds."""
    return (
        f"With {n_seeds} seeds, ± is a Student t interval from {n_seeds} values "
        f"(t = {_t_quantile(n_seeds):.1f}): it means little beyond a rough spread; run "
        f"at least {MIN_SEEDS_FOR_T} seeds (`--n-seeds`) for a usable interval."
    )


def format_value(value: float, count: bool = False, decimals: int = DECIMALS) -> str:
    """``value`` alone: a whole number for a count, else ``decimals`` decimals."""
    if math.isnan(value):
        return "n/a"
    if count:
        return f"{value:,.0f}"
    return f"{value:.{decimals}f}"


def interval_decimals(half_width: float) -> int:
    """Decimals that show ``half_width`` (> 0) to two significant digits, within 0..4."""
    return min(DECIMALS, max(0, 1 - math.floor(math.log10(half_width))))


def format_mean(mean: float, half_width: float | None, count: bool = False) -> str:
    """The mean as it stands before its ``± half_width`` (:func:`format_half_width`)."""
    if half_width is None or math.isnan(half_width) or half_width <= 0 or count:
        return format_value(mean, count)
    return format_value(mean, count, interval_decimals(half_width))


def format_half_width(half_width: float, count: bool = False) -> str:
    """``± half_width``: ``± 0`` when it is zero, whole for a count, else two significant
    digits (``± < 0.0001`` when smaller than the last decimal shown)."""
    if half_width == 0:
        return "± 0"
    if count:
        return f"± {half_width:,.0f}"
    decimals = interval_decimals(half_width)
    if round(half_width, decimals) == 0:
        return f"± < {10**-decimals:.{decimals}f}"
    return f"± {half_width:.{decimals}f}"


def _t_quantile(n_seeds: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n_seeds - 1))
