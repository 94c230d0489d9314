"""Ranking metrics: sps, recall, precision, hit, mrr, ndcg, coverage, blockbuster share;
rating metrics: rmse, mae."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_metrics(register):
    from recbench_metrics.ranking_metrics import RANKING_METRICS
    from recbench_metrics.rating_metrics import RATING_METRICS

    for metric in (*RANKING_METRICS, *RATING_METRICS):
        register(metric)
