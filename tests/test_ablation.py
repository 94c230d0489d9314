"""The order check: shuffling within sequences, the verdict, and the run's extra cells."""

from __future__ import annotations

import numpy as np
import pytest

import recbench
from recbench.ablation import choose_model, order_verdict, shuffle_order
from recbench.errors import ConfigError
from recbench.interactions import Sequences
from recbench.results import RunDirectory


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


def test_the_verdict_says_whether_order_matters():
    rng = np.random.default_rng(0)
    in_order = (rng.random(2000) < 0.30).astype(float)
    worse = (rng.random(2000) < 0.15).astype(float)
    same = (rng.random(2000) < 0.30).astype(float)
    better = (rng.random(2000) < 0.45).astype(float)
    assert order_verdict("sps@10", in_order, worse).conclusion.startswith("order matters")
    assert order_verdict("sps@10", in_order, same).conclusion.startswith("no evidence")
    assert order_verdict("sps@10", in_order, better).conclusion.startswith("shuffled sequences do")
    verdict = order_verdict("sps@10", in_order, worse)
    assert verdict.p_value < 1e-6
    assert verdict.in_order == pytest.approx(in_order.mean())


def test_choosing_the_model():
    assert choose_model("auto", ["pop", "lstm", "gru4rec"], ["lstm", "gru4rec"]) == "lstm"
    assert choose_model("auto", ["pop"], []) is None
    assert choose_model("off", ["pop", "lstm"], ["lstm"]) is None
    assert choose_model("pop", ["pop", "lstm"], ["lstm"]) == "pop"
    with pytest.raises(ConfigError, match=r"'lstn'.*not a model of this run"):
        choose_model("lstn", ["pop", "lstm"], ["lstm"])


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
    report = (result.path / "report.md").read_text()
    assert "## Order check" in report
    assert "lstm (order-shuffled)" not in report.split("## Order check")[0]


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
