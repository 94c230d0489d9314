"""Intervals in report tables: digits that match the uncertainty, counts without
decimals, ``± 0`` explained, and the note on intervals from two seeds."""

from __future__ import annotations

import math

from recbench.report.intervals import (
    ZERO_NOTE,
    few_seeds_note,
    format_half_width,
    format_mean,
)


def cell(mean: float, half_width: float | None, count: bool = False) -> str:
    text = format_mean(mean, half_width, count)
    return text if half_width is None else f"{text} {format_half_width(half_width, count)}"


def test_a_wide_interval_shows_two_significant_digits_and_the_mean_to_match():
    assert cell(0.0691, 0.2028) == "0.07 ± 0.20"
    assert cell(0.3425, 0.0953) == "0.343 ± 0.095"
    assert cell(0.8, 1.2706) == "0.8 ± 1.3"


def test_a_narrow_interval_keeps_four_decimals():
    assert cell(0.3446, 0.0037) == "0.3446 ± 0.0037"
    assert cell(0.5, 0.00003) == "0.5000 ± < 0.0001"
    assert cell(0.5, None) == "0.5000"
    assert format_mean(math.nan, 0.1) == "n/a"


def test_counts_have_no_decimals_on_either_side():
    assert cell(28, 31.7655, count=True) == "28 ± 32"
    assert cell(1234, 6.3531, count=True) == "1,234 ± 6"


def test_zero_is_printed_as_zero_and_explained():
    assert cell(0.6, 0.0) == "0.6000 ± 0"
    assert cell(14, 0.0, count=True) == "14 ± 0"
    assert "not certainty" in ZERO_NOTE


def test_the_few_seeds_note_names_the_t_quantile():
    note = few_seeds_note(2)
    assert "2 seeds" in note and "t = 12.7" in note and "means little" in note
