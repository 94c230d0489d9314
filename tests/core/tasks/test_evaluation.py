"""The evaluation loop, with tiny deterministic models, and metric summaries."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from recbench_metrics.ranking_metrics import RANKING_METRICS
from rich.console import Console

from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences
from recbench.data.protocols import build_queries
from recbench.errors import ConfigError, PluginError
from recbench.progress import Progress
from recbench.stats.summary import summarize
from recbench.tasks.ranking.evaluation import default_batch_size, evaluate

CPU = torch.device("cpu")
METRICS = {cls.id: cls() for cls in RANKING_METRICS}


class SuccessorOracle:
    """Scores ``last input item + 1`` highest: the true next item of counting sequences."""

    id = "successor-oracle"
    max_length = 3

    def __init__(self, n_items: int):
        self.n_items = n_items

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        scores = torch.zeros(len(batch.items), self.n_items + 1)
        successor = (batch.items[:, -1] + 1).clamp(max=self.n_items)
        scores[torch.arange(len(batch.items)), successor] = 1.0
        return scores


class ConstantModel:
    """The same score for every item."""

    id = "constant"
    max_length = None

    def __init__(self, n_items: int):
        self.n_items = n_items

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return torch.zeros(len(batch.items), self.n_items + 1)


def run(model, queries, cutoffs=(1, 5, 10), **options):
    options = {"exclude_seen": True, "ties": "pessimistic", **options}
    return evaluate(
        model,
        queries,
        METRICS,
        cutoffs=cutoffs,
        item_counts=queries.sequences.item_counts(),
        device=CPU,
        progress=Progress.silent(),
        **options,
    )


COUNTING = Sequences.from_lists([[1, 2, 3, 4, 5], [3, 4, 5, 6], [2, 3, 4]], n_items=8)


def test_an_oracle_finds_every_next_item_at_rank_one():
    queries = build_queries("iterative", COUNTING)
    result = run(SuccessorOracle(8), queries)
    assert (result.protocol, result.n_queries, result.n_users) == ("iterative", 9, 3)
    for metric in ("sps", "hit", "mrr", "ndcg", "precision", "user_coverage"):
        assert result.summaries[f"{metric}@1"].mean == 1.0
    # recall@1 = 1 / |s[p:]| per query: users of 5, 4 and 3 items
    expected_recall = [1 / 4, 1 / 3, 1 / 2, 1, 1 / 3, 1 / 2, 1, 1 / 2, 1]
    np.testing.assert_allclose(result.per_query["recall@1"], expected_recall)
    assert result.summaries["item_coverage@1"].mean == 5  # next items 2, 3, 4, 5, 6


def test_a_constant_model_ranks_the_target_after_every_tied_item():
    # last-item: input [1, 2, 3, 4] (excluded), target 5 tied with items 6..10
    queries = build_queries("last-item", Sequences.from_lists([[1, 2, 3, 4, 5]], n_items=10))
    result = run(ConstantModel(10), queries, cutoffs=(5, 6, 10))
    assert result.summaries["sps@5"].mean == 0.0
    assert result.summaries["sps@6"].mean == 1.0
    assert result.summaries["mrr@10"].mean == pytest.approx(1 / 6)
    assert result.summaries["ndcg@10"].mean == pytest.approx(1 / math.log2(7))
    optimistic = run(ConstantModel(10), queries, cutoffs=(5, 6, 10), ties="optimistic")
    assert optimistic.summaries["mrr@10"].mean == 1.0
    assert (result.ties, optimistic.ties) == ("pessimistic", "optimistic")


class SeenLover:
    """Reads only the last input item but scores items 1-4 highest, then item 6."""

    id = "seen-lover"
    max_length = 1

    def __init__(self):
        self.widths: list[int] = []

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        self.widths.append(batch.items.shape[1])
        row = torch.tensor([0.0, 10, 10, 10, 10, 0, 5])
        return row.repeat(len(batch.items), 1)


def test_exclusion_removes_the_whole_prefix_not_only_the_truncated_input():
    # input [1, 2, 3, 4, 5], the model sees [5]; target 6
    queries = build_queries("last-item", Sequences.from_lists([[1, 2, 3, 4, 5, 6]], n_items=6))
    model = SeenLover()
    result = run(model, queries)
    assert model.widths == [1]
    assert result.summaries["sps@1"].mean == 1.0
    assert result.exclude_seen
    kept = run(SeenLover(), queries, exclude_seen=False)
    assert kept.summaries["sps@1"].mean == 0.0
    assert kept.summaries["mrr@10"].mean == pytest.approx(1 / 5)


class RandomTable:
    """Scores from a fixed random table indexed by the last input item."""

    id = "random-table"
    max_length = 2

    def __init__(self, n_items: int):
        generator = torch.Generator().manual_seed(0)
        self.table = torch.rand(n_items + 1, n_items + 1, generator=generator)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return self.table[batch.items[:, -1]]


def test_results_do_not_depend_on_the_batch_size():
    rng = np.random.default_rng(0)
    rows = [list(rng.permutation(40)[: rng.integers(2, 15)] + 1) for _ in range(30)]
    queries = build_queries("iterative", Sequences.from_lists(rows, n_items=40))
    results = [run(RandomTable(40), queries, batch_size=size) for size in (1, 7, None)]
    for result in results[1:]:
        assert result.per_query.keys() == results[0].per_query.keys()
        for name, array in result.per_query.items():
            np.testing.assert_array_equal(array, results[0].per_query[name])
        for name, summary in result.summaries.items():
            assert summary.mean == results[0].summaries[name].mean


def test_result_holds_summaries_and_per_query_arrays():
    queries = build_queries("half-split", COUNTING)
    result = run(SuccessorOracle(8), queries, cutoffs=(10, 2))
    names = {f"{cls.id}@{k}" for cls in RANKING_METRICS for k in (2, 10)}
    assert set(result.summaries) == names
    per_query = {name for name in names if METRICS[name.split("@")[0]].per_query}
    assert set(result.per_query) == per_query
    for name, summary in result.summaries.items():
        assert summary.n == 3
        if name in per_query:
            assert result.per_query[name].dtype == np.float64
            assert result.per_query[name].shape == (3,)
            assert summary.ci95 is not None
        else:
            assert summary.ci95 is None
    assert result.seconds > 0 and result.queries_per_second > 0


def test_no_queries_is_a_config_error():
    queries = build_queries("iterative", Sequences.from_lists([[1], [2]], n_items=2))
    with pytest.raises(ConfigError, match="iterative protocol produced no queries"):
        run(ConstantModel(2), queries)


@pytest.mark.parametrize("cutoffs", [(), (0, 10), (2.5,)])
def test_bad_cutoffs_are_a_config_error(cutoffs):
    with pytest.raises(ConfigError, match="cutoffs must be positive integers"):
        run(ConstantModel(8), build_queries("last-item", COUNTING), cutoffs=cutoffs)


def test_unknown_tie_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown tie policy"):
        run(ConstantModel(8), build_queries("last-item", COUNTING), ties="random")


class WrongShape:
    id = "wrong-shape"
    max_length = None

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return torch.zeros(len(batch.items), 3)


def test_scores_of_the_wrong_shape_name_the_model():
    with pytest.raises(PluginError, match=r"model 'wrong-shape'.*\[3, 9\]"):
        run(WrongShape(), build_queries("last-item", COUNTING))


class OneNumberMetric:
    id = "one-number"
    per_query = True

    def __call__(self, ranking, k, ctx):
        return torch.tensor(0.0)


def test_a_metric_returning_the_wrong_shape_is_a_plugin_error():
    queries = build_queries("last-item", COUNTING)
    with pytest.raises(PluginError, match=r"metric 'one-number@1' returned \[\]"):
        evaluate(
            ConstantModel(8),
            queries,
            {"one-number": OneNumberMetric()},
            cutoffs=(1,),
            item_counts=COUNTING.item_counts(),
            device=CPU,
            exclude_seen=True,
            progress=Progress.silent(),
        )


def test_a_visible_progress_bar_works():
    output = io.StringIO()
    progress = Progress(console=Console(file=output, force_terminal=True))
    queries = build_queries("iterative", COUNTING)
    result = evaluate(
        SuccessorOracle(8),
        queries,
        {"sps": METRICS["sps"]},
        cutoffs=(1,),
        item_counts=COUNTING.item_counts(),
        device=CPU,
        exclude_seen=True,
        progress=progress,
        batch_size=2,
        description="Evaluating oracle",
    )
    assert result.summaries["sps@1"].mean == 1.0


def test_default_batch_size_follows_the_catalogue_and_the_device():
    assert default_batch_size(2**20 - 1, CPU) == 2
    assert default_batch_size(2**20 - 1, torch.device("cuda")) == 32
    assert default_batch_size(10**9, CPU) == 1


def test_summarize_gives_the_mean_and_a_normal_95_percent_interval():
    summary = summarize(np.array([1.0, 0.0, 1.0, 0.0]))
    assert summary.mean == 0.5
    assert summary.n == 4
    standard_deviation = math.sqrt(1 / 3)  # sample standard deviation of 1, 0, 1, 0
    assert summary.ci95 == pytest.approx(1.959964 * standard_deviation / 2)
    assert summarize(np.array([0.25])).ci95 is None
    assert summarize(np.zeros(10)).ci95 == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        summarize(np.array([]))
