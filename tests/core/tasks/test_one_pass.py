"""One-pass evaluation (``score_prefixes``): the same rankings, per-query arrays and
metrics as one ``score`` per query where the model reads whole prefixes, in query order;
the whole history past ``max_length``; bad chunks named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbench_metrics.ranking_metrics import RANKING_METRICS

from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences
from recbench.data.protocols import PROTOCOLS, build_queries
from recbench.errors import PluginError
from recbench.progress import Progress
from recbench.tasks.ranking.evaluation import _query_rows, evaluate

METRICS = {cls.id: cls() for cls in RANKING_METRICS}


class HistorySum:
    """Scores every item by the sum of random integer rows of the items read (exact in
    float32): ``score`` over the last ``max_length`` items, ``score_prefixes`` over the
    whole history."""

    id = "history-sum"

    def __init__(self, n_items: int, max_length: int | None, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.rows = torch.randint(-3, 4, (n_items + 1, n_items + 1), generator=generator)
        self.rows = self.rows.float()
        self.rows[0] = 0.0  # padding reads as nothing
        self.max_length = max_length
        self.chunks_seen: list[tuple[int, int]] = []

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return self.rows[batch.items].sum(dim=1)

    def score_prefixes(self, items, lengths, steps, rows=None):
        total = torch.zeros(items.shape[0], self.rows.shape[1])
        for first in range(0, items.shape[1], steps):
            chunk = self.rows[items[:, first : first + steps]].cumsum(dim=1) + total[:, None]
            total = chunk[:, -1]
            self.chunks_seen.append(tuple(chunk.shape[:2]))
            yield chunk


def sequences(seed: int = 0, n_users: int = 37, n_items: int = 25) -> Sequences:
    rng = np.random.default_rng(seed)
    rows = [
        list(rng.choice(np.arange(1, n_items + 1), size=int(n), replace=False))
        for n in rng.integers(1, 20, size=n_users)
    ]
    return Sequences.from_lists(rows, n_items=n_items)


def evaluated(model, queries, one_pass, batch_size=40, ties="pessimistic"):
    return evaluate(
        model,
        queries,
        METRICS,
        cutoffs=(1, 5, 10),
        item_counts=np.ones(queries.sequences.n_items + 1, dtype=np.int64),
        device=torch.device("cpu"),
        exclude_seen=True,
        ties=ties,
        progress=Progress.silent(),
        batch_size=batch_size,
        one_pass=one_pass,
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("batch_size", [1, 17, 400])
def test_one_pass_gives_the_per_query_results_in_query_order(protocol, batch_size):
    queries = build_queries(protocol, sequences())
    model = HistorySum(queries.sequences.n_items, max_length=None)
    per_query = evaluated(model, queries, one_pass=False, batch_size=batch_size)
    one_pass = evaluated(model, queries, one_pass=True, batch_size=batch_size)
    assert one_pass.summaries == per_query.summaries
    assert per_query.per_query.keys() == one_pass.per_query.keys()
    for name, values in per_query.per_query.items():
        np.testing.assert_array_equal(one_pass.per_query[name], values, err_msg=name)
    assert one_pass.n_queries == per_query.n_queries


class ScoresOnlyMarkedRows(HistorySum):
    """Fills every row the evaluator did not mark with NaN (which ranking refuses)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marked = [0, 0]  # rows marked, rows in all

    def score_prefixes(self, items, lengths, steps, rows=None):
        assert rows is not None and rows.shape == items.shape and rows.dtype == torch.bool
        self.marked[0] += int(rows.sum())
        self.marked[1] += rows.numel()
        for first, chunk in zip(
            range(0, items.shape[1], steps),
            super().score_prefixes(items, lengths, steps),
            strict=True,
        ):
            yield chunk.masked_fill(~rows[:, first : first + steps, None], float("nan"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_pass_reads_only_the_rows_it_marks(protocol):
    queries = build_queries(protocol, sequences())
    expected = evaluated(HistorySum(queries.sequences.n_items, max_length=None), queries, True)
    model = ScoresOnlyMarkedRows(queries.sequences.n_items, max_length=None)
    marked = evaluated(model, queries, one_pass=True)
    for name, values in expected.per_query.items():
        np.testing.assert_array_equal(marked.per_query[name], values, err_msg=name)
    if protocol != "iterative":  # one query per user: most rows need no scores
        assert model.marked[0] < 0.5 * model.marked[1]


def test_a_chunk_answers_its_queries_user_by_user():
    scores = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)  # [B, w, items]
    user, column = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 0, 0, 1, 1, 1])
    query, rows = _query_rows(scores, np.arange(6) + 10, user, column)
    # Every row of the chunk: the chunk itself, user by user, without a copy.
    assert query.tolist() == [10, 13, 11, 14, 12, 15]
    assert torch.equal(rows, scores[torch.from_numpy(user[query - 10]), column[query - 10]])
    assert rows.data_ptr() == scores.data_ptr()
    # Some rows: those rows, in the same order.
    query, rows = _query_rows(scores, np.array([7, 8, 9]), np.array([2, 0, 1]), np.array([1, 1, 0]))
    assert query.tolist() == [8, 9, 7]
    assert torch.equal(rows, torch.stack([scores[0, 1], scores[1, 0], scores[2, 1]]))


def test_chunks_stay_within_the_batch_budget():
    queries = build_queries("iterative", sequences())
    model = HistorySum(queries.sequences.n_items, max_length=None)
    evaluated(model, queries, one_pass=True, batch_size=64)
    assert model.chunks_seen
    assert max(users * steps for users, steps in model.chunks_seen) <= 64


def test_one_pass_reads_the_whole_history_past_max_length():
    queries = build_queries("iterative", sequences())
    windowed = HistorySum(queries.sequences.n_items, max_length=3)
    whole = HistorySum(queries.sequences.n_items, max_length=None)
    history = evaluated(windowed, queries, one_pass=True)
    expected = evaluated(whole, queries, one_pass=False).per_query
    for name, values in expected.items():
        np.testing.assert_array_equal(history.per_query[name], values, err_msg=name)
    window = evaluated(windowed, queries, one_pass=False)
    long = queries.input_length > 3
    mrr_history, mrr_window = history.per_query["mrr@10"], window.per_query["mrr@10"]
    np.testing.assert_array_equal(mrr_history[~long], mrr_window[~long])
    assert not np.array_equal(mrr_history[long], mrr_window[long])


class TooFewChunks(HistorySum):
    def score_prefixes(self, items, lengths, steps, rows=None):
        yield from list(super().score_prefixes(items, lengths, steps, rows))[:-1]


class WrongShape(HistorySum):
    def score_prefixes(self, items, lengths, steps, rows=None):
        for chunk in super().score_prefixes(items, lengths, steps, rows):
            yield chunk[:, :, 1:]


@pytest.mark.parametrize(
    ("model_cls", "message"),
    [(TooFewChunks, "yielded .* chunks for"), (WrongShape, "yielded \\[.*\\] for the chunk")],
)
def test_bad_chunks_are_plugin_errors_naming_the_method(model_cls, message):
    queries = build_queries("iterative", sequences())
    with pytest.raises(PluginError, match=message) as error:
        evaluated(model_cls(queries.sequences.n_items, None), queries, one_pass=True)
    assert "score_prefixes" in error.value.where
