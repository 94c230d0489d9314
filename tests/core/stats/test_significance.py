"""Paired tests and multiple-testing corrections (recbench.stats.significance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recbench.stats.significance import (
    adjust,
    benjamini_hochberg,
    difference_test,
    holm,
    paired_test,
    pooled_differences,
    pooled_paired_test,
    pvalues_vs_reference,
)

A = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=float)
B = np.array([0, 0, 1, 0, 0, 0, 1, 0, 0, 0], dtype=float)


def test_wilcoxon_matches_scipy_and_the_exact_value_by_hand():
    # five positive differences of distinct size, five zeros: exact p = 2 / 2**5
    a = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.7, 0.7, 0.7, 0.7])
    b = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.7, 0.7, 0.7, 0.7])
    assert paired_test(a, b) == pytest.approx(0.0625)
    assert paired_test(a, b) == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert paired_test(A, B, "wilcoxon") == pytest.approx(stats.wilcoxon(A, B).pvalue)


def test_ttest_matches_scipy_and_the_value_by_hand():
    # differences 1, 2, 3: t = 2 / (1 / sqrt 3) with 2 degrees of freedom, whose CDF is
    # 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2)
    a, b = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    t = 2 * math.sqrt(3)
    assert paired_test(a, b, "ttest") == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert paired_test(A, B, "ttest") == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert paired_test(A, B, "ttest") == pytest.approx(paired_test(B, A, "ttest"))


@pytest.mark.parametrize("test", ["wilcoxon", "ttest"])
def test_identical_values_give_one(test):
    assert paired_test(A, A.copy(), test) == 1.0
    assert paired_test(np.zeros(5), np.zeros(5), test) == 1.0


@pytest.mark.parametrize("test", ["wilcoxon", "ttest"])
def test_a_clear_shift_gives_a_tiny_p_value(test):
    rng = np.random.default_rng(0)
    a = rng.random(300)
    b = a + 0.2 + rng.normal(0, 0.05, size=300)
    assert paired_test(a, b, test) < 1e-20


def test_degenerate_ttests():
    assert paired_test(np.ones(4), np.zeros(4), "ttest") == 0.0  # constant difference
    assert math.isnan(paired_test(np.array([1.0]), np.array([0.0]), "ttest"))
    assert math.isnan(paired_test(np.array([]), np.array([]), "wilcoxon"))


def test_pairs_with_a_nan_are_left_out():
    a = np.append(A, [np.nan, 1.0])
    b = np.append(B, [1.0, np.nan])
    for test in ("wilcoxon", "ttest"):
        assert paired_test(a, b, test) == pytest.approx(paired_test(A, B, test))
    assert math.isnan(paired_test(np.array([np.nan]), np.array([1.0])))


def test_length_mismatch_and_unknown_test_are_clear_errors():
    with pytest.raises(ValueError, match=r"same length.*10 and 9"):
        paired_test(A, B[:-1])
    with pytest.raises(ValueError, match="one-dimensional"):
        paired_test(A.reshape(2, 5), B.reshape(2, 5))
    with pytest.raises(ValueError, match=r"test must be one of \('wilcoxon', 'ttest'\)"):
        paired_test(A, B, "sign")  # type: ignore[arg-type]


def test_holm_textbook_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_is_monotone_capped_and_keeps_nan_out_of_the_family():
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    adjusted = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])
    p = np.random.default_rng(1).random(20) / 5
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    assert np.all(np.isnan(holm([np.nan, np.nan])))
    assert holm([]).shape == (0,)


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4p/i = 0.02, 0.02, 0.04, 0.04 (already monotone)
    np.testing.assert_allclose(
        benjamini_hochberg([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02]
    )
    p = np.random.default_rng(2).random(30) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p))
    adjusted = benjamini_hochberg([0.01, np.nan, 0.04])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04])


def test_adjust_checks_its_input():
    np.testing.assert_allclose(adjust([0.2, 0.01], "none"), [0.2, 0.01])
    with pytest.raises(ValueError, match="correction must be one of"):
        adjust([0.1], "bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def test_seeds_are_pooled_by_concatenating_paired_differences():
    rng = np.random.default_rng(3)
    a = {0: rng.random(20), 1: rng.random(35), 2: rng.random(10)}
    b = {0: rng.random(20), 1: rng.random(35)}  # seed 2 finished only for a
    pooled = np.concatenate([a[0] - b[0], a[1] - b[1]])
    for test in ("wilcoxon", "ttest"):
        assert pooled_paired_test(a, b, test) == pytest.approx(difference_test(pooled, test))
    assert math.isnan(pooled_paired_test({0: A}, {1: B}))
    with pytest.raises(ValueError, match=r"seed 1: .*same length"):
        pooled_paired_test({0: A, 1: A}, {0: B, 1: B[:3]})


def test_seeds_sharing_their_queries_count_each_query_once():
    """A fixed split.seed: every seed tests the same queries. A query's differences are
    averaged over the seeds (over those where the pair is not NaN), not concatenated as if
    three seeds were three times the queries."""
    rng = np.random.default_rng(5)
    truth = rng.normal(0.02, 0.2, 40)
    a = {seed: truth + rng.normal(0, 0.05, 40) for seed in (0, 1, 2)}
    b = {seed: np.zeros(40) for seed in (0, 1, 2)}
    a[2][7] = np.nan
    averaged = pooled_differences(a, b, same_queries=lambda split: None)
    expected = np.nanmean(np.stack([a[s] for s in (0, 1, 2)]), axis=0)
    np.testing.assert_allclose(averaged, expected)
    assert len(pooled_differences(a, b)) == 119  # concatenated: every seed's queries
    p_once = pooled_paired_test(a, b, "ttest", same_queries=lambda split: None)
    assert p_once == pytest.approx(difference_test(expected, "ttest"))
    assert p_once > pooled_paired_test(a, b, "ttest")  # concatenation overstates the evidence
    # (seed, fold) splits: the folds are the query sets, averaged over seeds within a fold
    folds = {(s, f): a[s][f * 20 : (f + 1) * 20] for s in (0, 1) for f in (0, 1)}
    zero = {split: np.zeros(20) for split in folds}
    by_fold = pooled_differences(folds, zero, same_queries=lambda split: split[1])
    np.testing.assert_allclose(by_fold, (a[0] + a[1]) / 2)
    with pytest.raises(ValueError, match="shares its queries with another split"):
        pooled_differences({0: A, 1: A[:4]}, {0: B, 1: B[:4]}, same_queries=lambda s: None)


def test_with_users_a_users_queries_are_averaged_and_the_test_runs_over_users():
    """Iterative gives a user many queries, which are not independent: with the test user
    of each query, the differences of a user's queries are averaged (NaN pairs left out)
    after the seeds sharing the queries are, and each user is one unit."""
    a = {
        0: np.array([1.0, 0.0, 1.0, np.nan, 1.0, 0.0]),
        1: np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0]),
    }
    b = {0: np.zeros(6), 1: np.zeros(6)}
    users = {0: np.array([7, 7, 3, 3, 3, 9]), 1: np.array([5, 5, 5, 8, 8, 8])}
    # seeds re-split: each seed's users are units of their own
    # (seed 0: users 3, 7, 9; seed 1: users 5, 8)
    np.testing.assert_allclose(pooled_differences(a, b, users=users), [1, 0.5, 0, 2 / 3, 2 / 3])
    # seeds sharing their queries: the seeds are averaged query by query first
    shared = {0: users[0], 1: users[0]}
    seed_means = np.array([1.0, 0.5, 0.5, 1.0, 1.0, 0.0])  # query 3: seed 1 only
    expected = [np.mean(seed_means[[2, 3, 4]]), np.mean(seed_means[[0, 1]]), 0.0]  # users 3, 7, 9
    got = pooled_differences(a, b, same_queries=lambda split: None, users=shared)
    np.testing.assert_allclose(got, expected)
    assert pooled_paired_test(a, b, "ttest", lambda split: None, shared) == pytest.approx(
        difference_test(expected, "ttest")
    )
    with pytest.raises(ValueError, match="seed 1: no test user is known"):
        pooled_differences(a, b, users={0: users[0]})
    with pytest.raises(ValueError, match="seed 0: 2 query users for 6 queries"):
        pooled_differences(a, b, users={0: users[0][:2], 1: users[1]})


def test_pvalues_vs_reference_are_holm_adjusted_over_the_other_models():
    rng = np.random.default_rng(4)
    base = {seed: rng.random(50) for seed in (0, 1)}
    per_query = {
        "pop": base,
        "better": {seed: values + 0.3 + rng.normal(0, 0.05, 50) for seed, values in base.items()},
        "same": {seed: values + rng.normal(0, 0.01, 50) for seed, values in base.items()},
        "other_seed": {5: rng.random(50)},
    }
    raw = pvalues_vs_reference(per_query, "pop", correction="none")
    assert list(raw) == ["better", "same", "other_seed"]
    assert raw["better"] == pytest.approx(pooled_paired_test(per_query["better"], base))
    assert math.isnan(raw["other_seed"])
    adjusted = pvalues_vs_reference(per_query, "pop")
    np.testing.assert_allclose(
        [adjusted["better"], adjusted["same"]], holm([raw["better"], raw["same"]])
    )
    assert adjusted["better"] < 1e-8 and adjusted["same"] > adjusted["better"]
    assert math.isnan(adjusted["other_seed"])
    bh = pvalues_vs_reference(per_query, "pop", test="ttest", correction="benjamini-hochberg")
    assert bh["better"] < 1e-8


def test_pvalues_vs_reference_errors():
    with pytest.raises(ValueError, match="reference model 'lstm' has no per-query values"):
        pvalues_vs_reference({"pop": {0: A}}, "lstm")
    with pytest.raises(ValueError, match="knn vs pop: seed 0"):
        pvalues_vs_reference({"pop": {0: A}, "knn": {0: B[:4]}}, "pop")
    assert pvalues_vs_reference({"pop": {0: A}}, "pop") == {}


def test_two_models_of_a_run_are_tested_on_the_same_queries(tmp_path):
    import shutil
    from pathlib import Path

    from recbench.api import load_results
    from recbench.errors import ConfigError

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[2] / "fixtures" / "report-run", run)
    result = load_results(run)
    test = result.paired_test("sr", "pop", "iterative", "sps@10")
    frame = result.to_dataframe()
    sps = frame[(frame["metric"] == "sps") & (frame["cutoff"] == 10)]
    sr = sps[(sps["model"] == "sr") & (sps["protocol"] == "iterative")]["mean"].mean()
    assert test["mean_a"] == pytest.approx(sr)
    assert test["mean_a"] > test["mean_b"] and test["p_value"] < 1e-3
    same = result.paired_test("sr", "sr", "iterative", "sps@10")
    assert same["p_value"] == 1.0
    with pytest.raises(ConfigError, match="no per-query values"):
        result.paired_test("sr", "pop", "iterative", "item_coverage@10")


def test_a_run_with_a_fixed_split_seed_tests_each_user_once(tmp_path):
    """Two seeds of `-o split.seed=0` test the same queries: the run's paired test averages
    each query's differences over the seeds, then each test user's over the user's
    queries (the cells record each query's user), and the report says so."""
    from recbench.api import load_results
    from recbench.cli import main
    from recbench.results import QUERY_USER, RunDirectory, split_key

    run = tmp_path / "run"
    args = ["run", "--models", "pop,markov", "--dataset", "synthetic:tiny", "--seeds", "0,1"]
    args += ["-o", "split.seed=0", "--protocols", "iterative", "--order-check", "off"]
    assert main([*args, "--no-export", "--quiet", "--out", str(run)]) == 0
    run_dir = RunDirectory.open(run)
    values: dict[str, dict] = {"pop": {}, "markov": {}}
    users = {}
    for cell in run_dir.cells():
        per_query = run_dir.per_query(cell)
        values[cell["model_label"]][split_key(cell)] = per_query["mrr@10"]
        users[split_key(cell)] = per_query[QUERY_USER]
        assert len(per_query[QUERY_USER]) == cell["n_queries"]
    assert np.array_equal(values["pop"][0], values["pop"][1])  # the same queries, re-trained
    assert np.array_equal(users[0], users[1])
    n_users = len(np.unique(users[0]))
    assert n_users == cell["n_users"] < len(users[0])  # iterative: several queries a user
    differences = (values["markov"][0] + values["markov"][1] - 2 * values["pop"][0]) / 2
    per_user = [differences[users[0] == user].mean() for user in np.unique(users[0])]
    test = load_results(run).paired_test("markov", "pop", "iterative", "mrr@10")
    assert test["p_value"] == pytest.approx(difference_test(per_user))
    report = (run / "report.md").read_text()
    assert "every seed tests the same queries, so a query's differences are averaged" in report
    assert "a test user's differences are averaged over the user's queries" in report
    assert f"{n_users:,} paired users" in report
