"""The order check: shuffling within sequences, the verdict, and the run's extra cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recbench
from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences
from recbench.data.protocols import build_queries
from recbench.errors import ConfigError
from recbench.results import RunDirectory
from recbench.stats.significance import difference_test
from recbench.tasks.ranking.order_check import (
    QUERY_INDEX,
    ShuffledInputs,
    choose_model,
    order_verdict,
    paired_values,
    sample_users,
    shuffle_order,
)


def test_shuffling_permutes_each_sequence_and_is_seeded():
    rows = [list(range(1, 40)), [5, 6, 7], [9], list(range(40, 100))]
    sequences = Sequences.from_lists(rows, 100)
    sequences = Sequences(
        offsets=sequences.offsets,
        items=sequences.items,
        users=sequences.users,
        n_items=100,
        timestamps=np.arange(len(sequences.items)) * 10,
        ratings=sequences.items.astype(np.float32) / 10,
    )
    shuffled = shuffle_order(sequences, seed=3)
    assert np.array_equal(shuffled.offsets, sequences.offsets)
    for row in range(len(rows)):
        assert sorted(shuffled.sequence(row)) == sorted(rows[row])
    assert not np.array_equal(shuffled.sequence(0), sequences.sequence(0))
    assert not np.array_equal(shuffled.sequence(3), sequences.sequence(3))
    # ratings travel with their items, timestamps stay with the positions
    assert np.allclose(shuffled.ratings, shuffled.items / 10)
    assert np.array_equal(shuffled.timestamps, sequences.timestamps)
    again = shuffle_order(sequences, seed=3)
    assert np.array_equal(again.items, shuffled.items)
    assert not np.array_equal(shuffle_order(sequences, seed=4).items, shuffled.items)


def test_shuffling_a_selection_keeps_rows_apart():
    sequences = Sequences.from_lists([[1, 2, 3], [4, 5, 6, 7], [8, 9]], 9)
    part = sequences.select(np.array([2, 1]))
    shuffled = shuffle_order(part, seed=0)
    assert sorted(shuffled.sequence(0)) == [8, 9]
    assert sorted(shuffled.sequence(1)) == [4, 5, 6, 7]


class _Recorder:
    """Scores each item by the position it was read at (so order shows in the scores)."""

    max_length = None
    id = "recorder"

    def __init__(self):
        self.batches = []

    def score(self, batch):
        self.batches.append(batch.items.clone())
        scores = torch.zeros(len(batch.items), 20)
        positions = torch.arange(batch.items.shape[1], dtype=torch.float32) + 1
        return scores.scatter_add(1, batch.items, positions.expand_as(batch.items).clone())


def test_shuffled_inputs_permute_each_row_and_keep_padding_left():
    model = _Recorder()
    wrapped = ShuffledInputs(model, seed=0)
    items = torch.tensor([[0, 0, 0, 5, 6, 7], [1, 2, 3, 4, 8, 9], [0, 0, 0, 0, 0, 11]])
    lengths = torch.tensor([3, 6, 1])
    changed = False
    for _ in range(5):
        wrapped.score(SequenceBatch(items, lengths))
        seen = model.batches[-1]
        assert (seen[0, :3] == 0).all() and sorted(seen[0, 3:].tolist()) == [5, 6, 7]
        assert sorted(seen[1].tolist()) == [1, 2, 3, 4, 8, 9]
        assert seen[2].tolist() == [0, 0, 0, 0, 0, 11]
        changed |= not torch.equal(seen, items)
    assert changed
    assert wrapped.max_length is None and wrapped.id == "recorder"
    again = ShuffledInputs(_Recorder(), seed=0)
    again.score(SequenceBatch(items, lengths))
    assert torch.equal(again.model.batches[0], model.batches[0])


def test_the_verdict_says_whether_order_matters():
    rng = np.random.default_rng(0)
    in_order = (rng.random(2000) < 0.30).astype(float)
    # the same queries without order: some hits lost, or some gained, or nothing changes
    worse = in_order * (rng.random(2000) < 0.6)
    better = np.maximum(in_order, rng.random(2000) < 0.2)
    assert order_verdict({"sps@10": (in_order, worse)}).conclusion.startswith("order matters")
    assert order_verdict({"sps@10": (in_order, in_order)}).conclusion.startswith("no evidence")
    assert order_verdict({"sps@10": (in_order, better)}).conclusion.startswith(
        "the model does better"
    )
    (comparison,) = order_verdict({"sps@10": (in_order, worse)}).comparisons
    assert comparison.p_value < 1e-6 and comparison.adjusted_p == comparison.p_value
    assert comparison.in_order == pytest.approx(in_order.mean())
    with pytest.raises(ValueError):
        order_verdict({"sps@10": (in_order, in_order[:-1])})
    # over users: a user's queries averaged first, then one unit per user
    users = np.arange(len(in_order)) % 7
    (by_user,) = order_verdict({"sps@10": (in_order, worse)}, users=users).comparisons
    per_user = [(in_order - worse)[users == u].mean() for u in range(7)]
    assert by_user.p_value == pytest.approx(difference_test(per_user))
    assert by_user.p_value > comparison.p_value  # 7 users carry less evidence


def test_the_verdict_counts_every_metric_holm_corrected():
    rng = np.random.default_rng(1)
    same = (rng.random(2000) < 0.30).astype(float)
    in_order = rng.random(2000)
    worse = in_order * (rng.random(2000) < 0.6)
    # the first metric shows nothing, the other two drop: the verdict must not stop at sps
    verdict = order_verdict(
        {"sps@10": (same, same), "recall@10": (in_order, worse), "mrr@10": (in_order, worse)}
    )
    assert verdict.conclusion.startswith("order matters")
    assert "recall@10 and mrr@10" in verdict.conclusion
    assert "no difference on sps@10" in verdict.conclusion
    # Holm: the smallest p-value is multiplied by the number of metrics tested
    raw = sorted(c.p_value for c in verdict.comparisons if not np.isnan(c.p_value))
    adjusted = sorted(c.adjusted_p for c in verdict.comparisons if not np.isnan(c.adjusted_p))
    assert adjusted[0] == pytest.approx(min(1.0, raw[0] * 2))  # sps@10 untestable: m = 2


def test_a_p_value_that_holm_lifts_above_alpha_does_not_separate():
    rng = np.random.default_rng(2)
    in_order = rng.random(300)
    slightly = in_order + rng.normal(-0.05, 1.0, 300)
    values = {"recall@10": (in_order, slightly)}
    alone = order_verdict(values).comparisons[0]
    assert 0.01 < alone.p_value < 0.05, alone.p_value  # separates when tested alone
    noise = {f"m{i}@10": (in_order, in_order + rng.normal(0, 1e-3, 300)) for i in range(4)}
    family = order_verdict(values | noise)
    assert family.comparisons[0].adjusted_p >= 0.05
    assert family.conclusion.startswith("no evidence")


def test_opposite_directions_give_a_mixed_verdict():
    rng = np.random.default_rng(3)
    in_order = rng.random(2000)
    verdict = order_verdict(
        {"sps@10": (in_order, in_order * 0.5), "mrr@10": (in_order, in_order * 0.5 + 0.6)}
    )
    assert (
        verdict.conclusion == "mixed: without order the model loses on sps@10 but gains on mrr@10"
    )


def test_choosing_the_model():
    assert choose_model("auto", ["pop", "lstm", "gru4rec"], ["lstm", "gru4rec"]) == "lstm"
    assert choose_model("auto", ["pop"], []) is None
    assert choose_model("off", ["pop", "lstm"], ["lstm"]) is None
    assert choose_model("pop", ["pop", "lstm"], ["lstm"]) == "pop"
    with pytest.raises(ConfigError, match=r"'lstn'.*not a model of this run"):
        choose_model("lstn", ["pop", "lstm"], ["lstm"])


def test_the_sample_holds_every_query_of_the_drawn_users_and_is_seeded():
    lengths = [3, 5, 2, 4, 6, 1, 3]
    sequences = Sequences.from_lists([list(range(1, n + 1)) for n in lengths], n_items=10)
    queries = build_queries("iterative", sequences)
    assert sample_users(queries, 6, seed=0) is None  # 6 users have a query: no sample
    assert sample_users(queries, 0, seed=0) is None
    index = sample_users(queries, 3, seed=0)
    assert index is not None
    assert np.all(np.diff(index) > 0)
    drawn = np.unique(queries.row[index])
    assert len(drawn) == 3
    # every query of a drawn user, none of the others
    assert np.array_equal(index, np.flatnonzero(np.isin(queries.row, drawn)))
    assert np.array_equal(sample_users(queries, 3, seed=0), index)
    draws = {tuple(np.unique(queries.row[sample_users(queries, 3, seed=s)])) for s in range(8)}
    assert len(draws) > 1
    selected = queries.select(index)
    assert np.array_equal(selected.row, queries.row[index])
    assert np.array_equal(selected.input_length, queries.input_length[index])
    assert np.array_equal(selected.n_targets, queries.n_targets[index])


def test_a_sampled_check_is_paired_with_the_same_in_order_queries():
    in_order = {"mrr@10": np.array([0.1, 0.2, 0.3, 0.4]), "recall@10": np.ones(4)}
    shuffled = {"mrr@10": np.array([0.5, 0.6]), QUERY_INDEX: np.array([1, 3])}
    values = paired_values(in_order, shuffled, ["mrr@10", "recall@10"])
    assert list(values) == ["mrr@10"]  # only what both cells hold
    assert np.array_equal(values["mrr@10"][0], [0.2, 0.4])
    whole = paired_values(in_order, {"mrr@10": np.zeros(4)}, ["mrr@10"])
    assert np.array_equal(whole["mrr@10"][0], in_order["mrr@10"])


def test_a_run_checks_order_once_on_the_first_seed(settings, tmp_path):
    result = recbench.run(
        models=["pop", "lstm"],
        dataset="synthetic:tiny",
        protocols=["half-split"],
        seeds=[3, 4],
        overrides=["lstm.epochs=1", "export.enabled=false"],
        out=tmp_path / "run",
        settings=settings,
        quiet=True,
    )
    cells = list(RunDirectory.open(result.path).cells())
    checks = [c for c in cells if c.get("ablation")]
    assert [(c["model_label"], c["seed"], c["status"]) for c in checks] == [
        ("lstm (order-shuffled)", 3, "ok")
    ]
    assert len(cells) == 5
    # evaluated on the benchmark's own queries: same count, paired
    original = next(c for c in cells if c["model_label"] == "lstm" and c["seed"] == 3)
    assert checks[0]["n_queries"] == original["n_queries"]
    report = (result.path / "report.md").read_text()
    assert "## Order check" in report
    assert "lstm (order-shuffled)" not in report.split("## Order check")[0]
    assert "paired over the test users (a user's queries averaged)" in report


def test_a_sampled_order_check_reads_the_sample_of_test_users(settings, tmp_path):
    def run(users: int):
        return recbench.run(
            models=["pop", "itemknn"],
            dataset="synthetic:tiny",
            protocols=["iterative"],
            order_check="itemknn",
            overrides=["export.enabled=false", f"eval.order_check_users={users}"],
            out=tmp_path / f"run{users}",
            settings=settings,
            quiet=True,
        )

    result = run(3)
    directory = RunDirectory.open(result.path)
    cells = {c["model_label"]: c for c in directory.cells()}
    check, original = cells["itemknn (order-shuffled)"], cells["itemknn"]
    assert check["n_users"] == 3 < original["n_users"]
    index = directory.per_query(check)[QUERY_INDEX]
    assert len(index) == check["n_queries"] < original["n_queries"]
    report = (result.path / "report.md").read_text().split("## Order check")[1]
    assert f"{check['n_queries']:,} of {original['n_queries']:,}" in report
    in_order = directory.per_query(original)["mrr@10"][index].mean()
    row = next(line for line in report.splitlines() if "| mrr@10 " in line)
    assert [cell.strip() for cell in row.split("|")][5] == f"{in_order:.4f}"
    # the sample size is in the key of the check's cells only
    other = {c["model_label"]: c for c in RunDirectory.open(run(4).path).cells()}
    assert other["itemknn (order-shuffled)"]["n_users"] == 4
    assert other["itemknn (order-shuffled)"]["key"] != check["key"]
    assert other["itemknn"]["key"] == original["key"]


def test_the_order_check_can_be_turned_off_or_pointed_elsewhere(settings, tmp_path):
    result = recbench.run(
        models=["pop", "itemknn"],
        dataset="synthetic:tiny",
        protocols=["half-split"],
        order_check="itemknn",
        overrides=["export.enabled=false"],
        out=tmp_path / "run",
        settings=settings,
        quiet=True,
    )
    labels = {c["model_label"] for c in RunDirectory.open(result.path).cells()}
    assert labels == {"pop", "itemknn", "itemknn (order-shuffled)"}
    with pytest.raises(ConfigError, match="order check"):
        recbench.run(
            models=["pop"],
            dataset="synthetic:tiny",
            order_check="lstm",
            out=tmp_path / "run2",
            settings=settings,
            quiet=True,
        )
