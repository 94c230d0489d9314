"""The evaluation loop: score batches of queries, rank, compute every metric at every cutoff.

Queries are scored in batches on the model's device (``model.score`` under
``torch.no_grad()``), ranked there by :func:`recbench.ranking.rank` with ``K`` = the
largest cutoff, and only the top-K ranking comes back to the CPU, into a compact
:class:`~recbench.ranking.RankingStore` in query order (5 bytes per rank). Per-query
metrics then run over chunks of :data:`METRIC_CHUNK` queries and corpus-level metrics once
over the whole set, so memory grows with the query count only by the store and the
float64 per-query arrays, not by the metrics' temporaries: nothing per batch outlives its
batch.

A model that keeps state and defines the one-pass ``score_prefixes``
(:class:`recbench.contracts.Model`) may instead be evaluated in one pass per batch of
users (``one_pass=True``): the queries are grouped by user, each user's sequence is read
once, right-padded, with the state carried over its whole history (serving semantics,
``eval.prefixes=history``), and every chunk of prefixes the model yields is ranked by the
same :func:`~recbench.ranking.rank`. The store puts the rankings in query order, so the
per-query arrays have the same layout on either path. Reading a user of ``n`` items
costs ``O(n)`` recurrent steps instead of ``O(n * max_length)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recbench.contracts import MetricContext
from recbench.data.interactions import PADDING_ITEM, ragged_indices
from recbench.data.protocols import Queries
from recbench.errors import ConfigError, PluginError
from recbench.progress import Progress
from recbench.ranking import Ranking, RankingStore, TiePolicy, check_tie_policy, rank
from recbench.stats.summary import MetricSummary, summarize

#: Score-matrix elements per batch (``batch size x (n_items + 1)``) when no batch size is
#: given, by device type. A GPU wants large batches; on a CPU a batch whose scores, float64
#: ranking key and levels fit the last-level cache ranks several times faster per query
#: than a 32M-element batch that streams through memory.
SCORES_PER_BATCH = {"cuda": 32 * 2**20, "cpu": 2 * 2**20}
#: One pass: the most users read together, and how much longer than its users' total
#: length a batch's padded ``users x longest`` may be (padding columns are scored too).
ONE_PASS_MAX_USERS = 256
ONE_PASS_PADDING = 1.25
#: Queries per chunk when per-query metrics are computed: bounds the metrics' temporaries
#: (a few ``[chunk, K]`` tensors) whatever the number of queries.
METRIC_CHUNK = 2**18


@dataclass
class EvaluationResult:
    """Metric values of one model on one query set.

    Parameters
    ----------
    protocol:
        The protocol that built the queries.
    n_queries, n_users:
        How many queries, and how many distinct users they come from.
    summaries:
        ``"<metric>@<k>"`` -> mean (and 95% CI for per-query metrics).
    per_query:
        ``"<metric>@<k>"`` -> float64 ``[Q]`` values, for per-query metrics only.
    seconds:
        Wall time of the evaluation (scoring, ranking and metrics).
    exclude_seen, ties:
        The seen-item and tie policies used.
    """

    protocol: str
    n_queries: int
    n_users: int
    summaries: dict[str, MetricSummary]
    per_query: dict[str, np.ndarray]
    seconds: float
    exclude_seen: bool
    ties: str

    @property
    def queries_per_second(self) -> float:
        return self.n_queries / self.seconds if self.seconds > 0 else float("inf")


def default_batch_size(n_items: int, device: torch.device) -> int:
    """Queries per batch so that a batch's score matrix holds about
    :data:`SCORES_PER_BATCH` elements for ``device``."""
    elements = SCORES_PER_BATCH.get(device.type, SCORES_PER_BATCH["cuda"])
    return max(1, elements // (n_items + 1))


def evaluate(
    model: Any,
    queries: Queries,
    metrics: Mapping[str, Any],
    *,
    cutoffs: Sequence[int],
    item_counts: np.ndarray,
    device: torch.device,
    exclude_seen: bool,
    ties: str = "pessimistic",
    progress: Progress,
    batch_size: int | None = None,
    description: str = "",
    one_pass: bool = False,
) -> EvaluationResult:
    """Evaluate ``model`` on ``queries`` with every metric at every cutoff.

    Parameters
    ----------
    model:
        Has ``score(SequenceBatch) -> [B, n_items + 1]`` and ``max_length``
        (:class:`recbench.contracts.Model`).
    queries:
        The queries to answer (:func:`recbench.data.protocols.build_queries`).
    metrics:
        Metric id -> metric instance (:class:`recbench.contracts.Metric`).
    cutoffs:
        The ``k`` of every metric, each at least 1.
    item_counts:
        int ``[n_items + 1]``: training events per item (for popularity-aware metrics).
    device:
        Where the model's inputs go.
    exclude_seen, ties:
        The seen-item and tie policies (:func:`recbench.ranking.rank`).
    progress:
        Shows a bar advancing by queries.
    batch_size:
        Queries per batch (score rows per chunk in one pass); by default from the
        catalogue size and the device (:func:`default_batch_size`).
    description:
        The bar's label.
    one_pass:
        Answer the queries with the model's ``score_prefixes``, one pass per batch of
        users over their whole histories (see the module docstring); only for a model
        that defines it (``PluginInfo.has_score_prefixes``). ``False``: one ``score``
        per query, on the last ``max_length`` items of its prefix.

    Raises
    ------
    ConfigError
        When there are no queries, or a cutoff is not a positive integer.
    PluginError
        When the model's scores or a metric's values have the wrong shape or type.
    """
    if len(queries) == 0:
        raise ConfigError(
            f"the {queries.protocol} protocol produced no queries for this split",
            where="evaluation",
            hint="queries need users with at least 2 items: use a larger test or "
            "validation set, another split or another protocol",
        )
    if not cutoffs or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cutoffs):
        raise ConfigError(
            f"cutoffs must be positive integers, got {list(cutoffs)}",
            where="cutoffs",
            hint="use e.g. 10,20",
        )
    checked_ties = check_tie_policy(ties)
    n_items = queries.sequences.n_items
    batch_size = batch_size or default_batch_size(n_items, torch.device(device))
    model_name = f"model '{getattr(model, 'id', type(model).__name__)}'"
    started = time.perf_counter()

    answer = _one_pass if one_pass else _per_query
    store = RankingStore(queries, max(cutoffs))
    with (
        progress.task(description or f"Evaluating ({queries.protocol})", total=len(queries)) as bar,
        torch.no_grad(),
    ):
        for index, ranking in answer(
            model, queries, max(cutoffs), batch_size, torch.device(device),
            exclude_seen=exclude_seen, ties=checked_ties, model_name=model_name,
        ):  # fmt: skip
            store.put(index, ranking)
            bar.advance(len(index))
    if store.n_answered_once != len(queries):
        raise PluginError(
            f"{store.n_answered_once} of {len(queries)} queries were answered exactly once",
            where=model_name,
            hint="score_prefixes must yield a chunk for every column of the sequences",
        )

    context = MetricContext(
        n_items=n_items,
        item_counts=torch.as_tensor(np.asarray(item_counts, dtype=np.int64)),
        n_users=queries.n_users,
    )
    ks = sorted(set(cutoffs))
    per_query = _per_query_metric_values(store, metrics, ks, context)
    whole: Ranking | None = None  # the whole set, read once for corpus-level metrics
    summaries: dict[str, MetricSummary] = {}
    for metric_id, metric in metrics.items():
        for k in ks:
            name = f"{metric_id}@{k}"
            if metric.per_query:
                summaries[name] = summarize(per_query[name])
            else:
                whole = store.ranking() if whole is None else whole
                value = _metric_values(metric, whole, k, context, name)
                summaries[name] = MetricSummary(mean=float(value), ci95=None, n=len(queries))
    return EvaluationResult(
        protocol=queries.protocol,
        n_queries=len(queries),
        n_users=queries.n_users,
        summaries=summaries,
        per_query=per_query,
        seconds=time.perf_counter() - started,
        exclude_seen=exclude_seen,
        ties=checked_ties,
    )


def _per_query_metric_values(
    store: RankingStore,
    metrics: Mapping[str, Any],
    cutoffs: Sequence[int],
    context: MetricContext,
) -> dict[str, np.ndarray]:
    """Every per-query metric at every cutoff, computed over :data:`METRIC_CHUNK` queries
    at a time (a per-query value depends on its own query only), as float64 ``[Q]``."""
    per_query = {m: metric for m, metric in metrics.items() if metric.per_query}
    values = {
        f"{metric_id}@{k}": np.empty(len(store), dtype=np.float64)
        for metric_id in per_query
        for k in cutoffs
    }
    for start in range(0, len(store), METRIC_CHUNK):
        stop = min(start + METRIC_CHUNK, len(store))
        chunk = store.ranking(start, stop)
        for metric_id, metric in per_query.items():
            for k in cutoffs:
                name = f"{metric_id}@{k}"
                values[name][start:stop] = _metric_values(metric, chunk, k, context, name)
    return values


def _metric_values(
    metric: Any, ranking: Ranking, k: int, context: MetricContext, name: str
) -> np.ndarray:
    """The metric's values as float64 (``[Q]`` per query, 0-d for the corpus), checked."""
    values = metric(ranking, k, context)
    expected = (len(ranking),) if metric.per_query else ()
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != expected:
        got = list(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise PluginError(
            f"metric '{name}' returned {got}",
            where=f"metric '{getattr(metric, 'id', name)}'",
            hint=f"return a tensor of shape {list(expected)}",
        )
    return values.detach().to("cpu", torch.float64).numpy()


def _per_query(
    model: Any,
    queries: Queries,
    k: int,
    batch_size: int,
    device: torch.device,
    *,
    exclude_seen: bool,
    ties: TiePolicy,
    model_name: str,
) -> Iterator[tuple[np.ndarray, Ranking]]:
    """Rank batches of ``batch_size`` queries in query order, one ``score`` row per query
    (its prefix cut to the model's ``max_length``)."""
    max_length = getattr(model, "max_length", None)
    for first in range(0, len(queries), batch_size):
        index = np.arange(first, min(first + batch_size, len(queries)), dtype=np.int64)
        scores = model.score(queries.model_inputs(index, max_length, device))
        yield index, _rank(scores, queries, index, k, exclude_seen, ties, f"{model_name}.score")


def _one_pass(
    model: Any,
    queries: Queries,
    k: int,
    batch_size: int,
    device: torch.device,
    *,
    exclude_seen: bool,
    ties: TiePolicy,
    model_name: str,
) -> Iterator[tuple[np.ndarray, Ranking]]:
    """Rank the queries user batch by user batch from ``model.score_prefixes``.

    Users are sorted by the longest prefix they need and batched so that a batch pads
    little (:func:`_user_batches`); a batch of ``B`` users reads ``batch_size // B``
    columns per chunk, so a chunk holds about ``batch_size`` score rows. Each chunk's
    rows of a query (the row after reading ``s[:p]``) are ranked together; yields the
    query positions and their ranking, in no particular query order. The model is told
    which rows answer a query (``rows``) and scores only those.
    """
    where = f"{model_name}.score_prefixes"
    sequences = queries.sequences
    n_columns = sequences.n_items + 1
    by_user = np.lexsort((queries.input_length, queries.row))
    users, first = np.unique(queries.row[by_user], return_index=True)
    counts = np.diff(np.append(first, len(by_user)))
    needed = queries.input_length[by_user[first + counts - 1]]  # each user's longest prefix
    for batch in _user_batches(needed, min(batch_size, ONE_PASS_MAX_USERS)):
        lengths = needed[batch]
        steps = max(1, batch_size // len(batch))
        width = int(lengths.max())
        columns = np.arange(width, dtype=np.int64)
        is_item = columns[None, :] < lengths[:, None]
        source = sequences.offsets[users[batch]][:, None] + columns[None, :]
        items = np.where(is_item, sequences.items[np.where(is_item, source, 0)], PADDING_ITEM)
        # The batch's queries, by the time row that answers them (row p - 1).
        query = by_user[ragged_indices(first[batch], counts[batch])]
        user = np.repeat(np.arange(len(batch), dtype=np.int64), counts[batch])
        row = queries.input_length[query] - 1
        by_row = np.argsort(row, kind="stable")
        query, user, row = query[by_row], user[by_row], row[by_row]
        chunk_starts = np.arange(0, width, steps, dtype=np.int64)
        bounds = np.searchsorted(row, np.append(chunk_starts, width))
        wanted = np.zeros((len(batch), width), dtype=bool)  # the rows that answer a query
        wanted[user, row] = True
        chunks = model.score_prefixes(
            torch.from_numpy(items.astype(np.int64, copy=False)).to(device),
            torch.from_numpy(lengths.astype(np.int64, copy=False)).to(device),
            steps,
            rows=torch.from_numpy(wanted).to(device),
        )
        n_chunks = 0
        for chunk, scores in zip(chunk_starts, chunks, strict=False):
            expected = (len(batch), min(steps, width - int(chunk)), n_columns)
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
                got = (
                    list(scores.shape)
                    if isinstance(scores, torch.Tensor)
                    else type(scores).__name__
                )
                raise PluginError(
                    f"score_prefixes yielded {got} for the chunk at column {chunk}",
                    where=where,
                    hint=f"yield [batch, min(steps, T - t0), n_items + 1] = {list(expected)}",
                )
            n_chunks += 1
            low, high = bounds[n_chunks - 1], bounds[n_chunks]
            if low == high:
                continue
            index, rows = _query_rows(
                scores, query[low:high], user[low:high], row[low:high] - chunk
            )
            yield index, _rank(rows, queries, index, k, exclude_seen, ties, where)
        if n_chunks < len(chunk_starts):
            raise PluginError(
                f"score_prefixes yielded {n_chunks} chunks for {width} columns in steps of {steps}",
                where=where,
                hint=f"yield one chunk per {steps} columns: {len(chunk_starts)} here",
            )


def _query_rows(
    scores: torch.Tensor, query: np.ndarray, user: np.ndarray, column: np.ndarray
) -> tuple[np.ndarray, torch.Tensor]:
    """``(query, scores[user, column])`` for the queries of a chunk of scores
    ``[B, w, n_items + 1]``, reordered user by user.

    In that order the queries that fill a chunk (the iterative protocol away from the
    users' ends) are the chunk itself, and no copy is made; otherwise one
    ``index_select`` (a CPU copies rows several times faster with it than with advanced
    indexing)."""
    batch, width, n_columns = scores.shape
    positions = user * width + column
    order = np.argsort(positions, kind="stable")
    query, positions = query[order], positions[order]
    flat = scores.reshape(-1, n_columns)  # a view of a contiguous chunk
    if len(positions) == batch * width and np.array_equal(positions, np.arange(len(positions))):
        return query, flat
    return query, flat.index_select(0, torch.from_numpy(positions).to(scores.device))


def _user_batches(lengths: np.ndarray, max_users: int) -> list[np.ndarray]:
    """Batches of user positions, by increasing ``lengths``: each of at most
    ``max_users`` users and, padded to its longest, at most :data:`ONE_PASS_PADDING`
    times its users' total length (a user alone may start a batch)."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order].tolist()
    batches, start, total = [], 0, 0
    for end, length in enumerate(sorted_lengths):
        count = end - start + 1
        if count > 1 and (
            count > max_users or count * length > ONE_PASS_PADDING * (total + length)
        ):
            batches.append(order[start:end])
            start, total = end, 0
        total += length
    batches.append(order[start:])
    return batches


def _rank(
    scores: torch.Tensor,
    queries: Queries,
    index: np.ndarray,
    k: int,
    exclude_seen: bool,
    ties: TiePolicy,
    where: str,
) -> Ranking:
    """:func:`rank`, its plugin errors naming the model method that scored."""
    try:
        return rank(scores, queries, index, k, exclude_seen=exclude_seen, ties=ties)
    except PluginError as exc:
        raise PluginError(exc.what, where=where, hint=exc.hint) from None
