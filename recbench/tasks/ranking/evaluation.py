"""The evaluation loop: score batches of queries, rank, compute every metric at every cutoff.

Queries are scored in batches on the model's device (``model.score`` under
``torch.no_grad()``), ranked there by :func:`recbench.ranking.rank` with ``K`` = the
largest cutoff, and only the top-K ranking comes back to the CPU. Metrics then run once
over the whole query set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recbench.contracts import MetricContext
from recbench.data.protocols import Queries
from recbench.errors import ConfigError, PluginError
from recbench.progress import Progress
from recbench.ranking import Ranking, check_tie_policy, rank
from recbench.stats.summary import MetricSummary, summarize

#: Score-matrix elements per batch (``batch size x (n_items + 1)``) when no batch size is
#: given, by device type. A GPU wants large batches; on a CPU a batch whose scores, float64
#: ranking key and levels fit the last-level cache ranks several times faster per query
#: than a 32M-element batch that streams through memory.
SCORES_PER_BATCH = {"cuda": 32 * 2**20, "cpu": 2 * 2**20}


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
        Queries per batch; by default from the catalogue size and the device
        (:func:`default_batch_size`).
    description:
        The bar's label.

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
    max_length = getattr(model, "max_length", None)
    model_name = f"model '{getattr(model, 'id', type(model).__name__)}'"
    started = time.perf_counter()

    batches: list[Ranking] = []
    with progress.task(
        description or f"Evaluating ({queries.protocol})", total=len(queries)
    ) as bar:
        for first in range(0, len(queries), batch_size):
            index = np.arange(first, min(first + batch_size, len(queries)), dtype=np.int64)
            with torch.no_grad():
                scores = model.score(queries.model_inputs(index, max_length, device))
                try:
                    ranking = rank(
                        scores,
                        queries,
                        index,
                        max(cutoffs),
                        exclude_seen=exclude_seen,
                        ties=checked_ties,
                    )
                except PluginError as exc:
                    raise PluginError(
                        exc.what, where=f"{model_name}.score", hint=exc.hint
                    ) from None
            batches.append(ranking.to("cpu"))
            bar.advance(len(index))
    ranking = Ranking.concat(batches)

    context = MetricContext(
        n_items=n_items,
        item_counts=torch.as_tensor(np.asarray(item_counts, dtype=np.int64)),
        n_users=queries.n_users,
    )
    summaries: dict[str, MetricSummary] = {}
    per_query: dict[str, np.ndarray] = {}
    for metric_id, metric in metrics.items():
        for k in sorted(set(cutoffs)):
            name = f"{metric_id}@{k}"
            values = _metric_values(metric, ranking, k, context, name)
            if metric.per_query:
                per_query[name] = values
                summaries[name] = summarize(values)
            else:
                summaries[name] = MetricSummary(mean=float(values), ci95=None, n=len(queries))
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
