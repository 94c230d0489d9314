"""Ranking metrics: sps, recall, precision, hit, mrr, ndcg, coverage, blockbuster share."""

from __future__ import annotations

from recbench import hookimpl

#: The plugin API these hooks are written for (see recbench.hookspecs).
RECBENCH_PLUGIN_API = 1


@hookimpl
def register_metrics(register):
    from recbench_metrics.ranking_metrics import RANKING_METRICS

    for metric in RANKING_METRICS:
        register(metric)
