"""Item-to-item baselines (``itemknn``, ``sr``, ``markov``): equal to their per-query
definitions, and hand-computed scores on a toy example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from baseline_oracles import OracleItemKNN, OracleRules, PerQueryModel
from recbench_baselines.itemknn import ItemKNN, ItemKNNOptions
from recbench_baselines.markov import Markov, MarkovOptions
from recbench_baselines.sr import SequentialRules, SequentialRulesOptions
from test_baselines_neighborhood import (
    TOY,
    all_queries,
    assert_same_scores,
    batch_of,
    fit,
    random_sequences,
)

from recbench.data.protocols import build_queries


def compare(model, oracle_model):
    rng = np.random.default_rng(3)
    train, test = random_sequences(rng, 80, 40), random_sequences(rng, 12, 40)
    queries = build_queries("iterative", test)
    fit(model, train)
    fit(oracle_model, train)
    assert_same_scores(all_queries(model, queries), all_queries(oracle_model, queries))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"neighbors": 3, "regularization": 0.0},
        {"alpha": 0.9, "regularization": 5.0, "neighbors": 6},
        {"steps": 3, "step_weighting": "log", "neighbors": 5},
        {"steps": 4, "step_weighting": "linear", "alpha": 0.2},
    ],
)
def test_itemknn_equals_its_per_query_definition(options):
    model = ItemKNN(ItemKNNOptions(**options))
    compare(model, PerQueryModel(OracleItemKNN(**options), model.max_length))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"steps": 3, "weighting": "linear", "pruning": 4},
        {"steps": 12, "weighting": "linear", "pruning": 0},
        {"steps": 2, "weighting": "quadratic", "pruning": 2},
        {"steps": 5, "weighting": "log", "pruning": 3},
        {"steps": 4, "weighting": "same", "pruning": 1},
    ],
)
def test_sr_equals_its_per_query_definition(options):
    compare(
        SequentialRules(SequentialRulesOptions(**options)),
        PerQueryModel(OracleRules(markov=False, **options), 1),
    )


@pytest.mark.parametrize("pruning", [20, 2, 0])
def test_markov_equals_its_per_query_definition(pruning):
    compare(
        Markov(MarkovOptions(pruning=pruning)),
        PerQueryModel(OracleRules(markov=True, pruning=pruning), 1),
    )


# TOY: [1, 2, 3], [2, 4], [1, 2, 5, 6], [3, 4, 5]; supports: 1:2, 2:3, 3:2, 4:2, 5:2, 6:1.


def test_itemknn_toy_scores_by_hand():
    model = fit(ItemKNN(ItemKNNOptions(regularization=0.0)), TOY)
    # Item 2 co-occurs with 1 twice, with 3, 4, 5, 6 once; plain cosine.
    scores = model.score(batch_of([5, 2]))[0].tolist()
    expected = [
        0,
        2 / math.sqrt(3 * 2),
        0,
        1 / math.sqrt(3 * 2),
        1 / math.sqrt(3 * 2),
        1 / math.sqrt(3 * 2),
        1 / math.sqrt(3 * 1),
    ]
    assert scores == pytest.approx(expected)
    # λ = 20 and α = 1 (confidence damped by the antecedent's support): 2/23 for item 1.
    damped = fit(ItemKNN(ItemKNNOptions(regularization=20.0, alpha=1.0, neighbors=1)), TOY)
    assert damped.score(batch_of([2]))[0].tolist() == pytest.approx([0, 2 / 23, 0, 0, 0, 0, 0])
    # Two steps, div decay: sim(6, .) + sim(2, .) / 2.
    two = fit(ItemKNN(ItemKNNOptions(regularization=0.0, steps=2)), TOY)
    scores = two.score(batch_of([2, 6]))[0].tolist()
    s26 = 1 / math.sqrt(3)
    s16 = s56 = 1 / math.sqrt(2)
    assert scores[1] == pytest.approx(s16 + 2 / math.sqrt(6) / 2)
    assert scores[2] == pytest.approx(s26)  # sim(2, 2) is not used
    assert scores[5] == pytest.approx(s56 + 1 / math.sqrt(6) / 2)
    assert scores[6] == pytest.approx(s26 / 2)


def test_sr_toy_scores_by_hand():
    model = fit(SequentialRules(SequentialRulesOptions(steps=3, weighting="div")), TOY)
    # Rules from 2: 2->3 (1), 2->4 (1), 2->5 (1), 2->6 (1/2).
    assert model.score(batch_of([2]))[0].tolist() == pytest.approx([0, 0, 0, 1, 1, 1, 0.5])
    # Rules from 1: 1->2 twice at distance 1, 1->3 (1/2), 1->5 (1/2), 1->6 (1/3).
    assert model.score(batch_of([1]))[0].tolist() == pytest.approx([0, 0, 2, 0.5, 0, 0.5, 1 / 3])
    pruned = fit(SequentialRules(SequentialRulesOptions(steps=3, pruning=2)), TOY)
    # The two strongest rules of 2 among four tied at 1: the smaller ids, 3 and 4.
    assert pruned.score(batch_of([2]))[0].tolist() == pytest.approx([0, 0, 0, 1, 1, 0, 0])


def test_markov_toy_scores_by_hand():
    model = fit(Markov(), TOY)
    # 2 is followed once each by 3, 4 and 5: 1/3 each.
    assert model.score(batch_of([1, 2]))[0].tolist() == pytest.approx(
        [0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0]
    )
    # 6 is never followed by anything: every item scores 0.
    assert model.score(batch_of([6]))[0].tolist() == [0] * 7


def test_models_score_from_the_last_item_and_reject_bad_options():
    for model in (ItemKNN(), SequentialRules(), Markov()):
        assert model.max_length == 1
        with pytest.raises(RuntimeError, match="before fit"):
            model.score(batch_of([1]))
    assert ItemKNN(ItemKNNOptions(steps=3)).max_length == 3
    with pytest.raises(ValueError, match="alpha"):
        ItemKNNOptions(alpha=1.5)
    with pytest.raises(ValueError, match="steps"):
        SequentialRulesOptions(steps=0)
    with pytest.raises(ValueError, match="pruning"):
        MarkovOptions(pruning=-1)
    scores = fit(SequentialRules(), TOY).score(batch_of([3], [4]))
    assert scores.shape == (2, 7) and scores.dtype == torch.float32
