"""The minimum detectable difference, and pooling a k-fold seed's folds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbench.stats.power import detectable_difference, minimum_detectable_difference
from recbench.stats.summary import pool_folds, summarize


def test_the_minimum_detectable_difference_of_a_known_case():
    # (z(0.975) + z(0.8)) * 1 / sqrt(100) = (1.959964 + 0.841621) / 10 (Cohen 1988: 2.80 s/√n)
    assert minimum_detectable_difference(1.0, 100) == pytest.approx(0.2801585, abs=1e-6)
    # a stricter level (Holm's first step over 10 tests) needs a larger difference
    assert minimum_detectable_difference(1.0, 100, alpha=0.005) == pytest.approx(
        (2.807034 + 0.841621) / 10, abs=1e-6
    )
    # four times the queries detect half the difference
    assert minimum_detectable_difference(0.5, 400) == pytest.approx(
        minimum_detectable_difference(0.5, 100) / 2
    )


def test_a_true_difference_of_the_mdd_is_detected_about_80_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, sd, repetitions = 200, 0.4, 4000
    mdd = minimum_detectable_difference(sd, n, alpha=0.05, power=0.8)
    differences = rng.normal(mdd, sd, size=(repetitions, n))
    z = differences.mean(axis=1) / (differences.std(axis=1, ddof=1) / math.sqrt(n))
    detected = np.mean(np.abs(z) > 1.959964)
    assert detected == pytest.approx(0.8, abs=0.025)


def test_detectable_difference_reads_the_observed_differences():
    differences = np.array([0.0, 1.0, 0.0, 1.0, np.nan, -1.0, 0.0, 1.0])
    result = detectable_difference(differences, alpha=0.01)
    assert result.n == 7
    assert result.sd == pytest.approx(np.nanstd(differences, ddof=1))
    assert result.observed == pytest.approx(2 / 7)
    assert result.difference == pytest.approx(
        minimum_detectable_difference(result.sd, 7, alpha=0.01)
    )
    assert math.isnan(detectable_difference([1.0]).difference)


@pytest.mark.parametrize("bad", [dict(n=0), dict(sd=-1.0), dict(alpha=0.0), dict(power=1.0)])
def test_minimum_detectable_difference_refuses_impossible_inputs(bad):
    args = {"sd": 1.0, "n": 10, "alpha": 0.05, "power": 0.8} | bad
    with pytest.raises(ValueError):
        minimum_detectable_difference(
            args["sd"], args["n"], alpha=args["alpha"], power=args["power"]
        )


def test_pooling_folds_equals_summarizing_all_their_queries():
    rng = np.random.default_rng(1)
    folds = [rng.random(n) for n in (40, 41, 39)]
    folds[1] += 0.2  # folds differ in their means too
    pooled = pool_folds([summarize(values) for values in folds])
    everything = summarize(np.concatenate(folds))
    assert pooled.n == everything.n == 120
    assert pooled.mean == pytest.approx(everything.mean)
    assert pooled.ci95 == pytest.approx(everything.ci95)
    one = summarize(folds[0])
    assert pool_folds([one]) is one
