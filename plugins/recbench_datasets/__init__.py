"""Datasets: MovieLens (100K, 1M, 10M, 20M, 25M), Amazon reviews (2014, 2018), session
logs (YOOCHOOSE, DIGINETICA, RetailRocket, OTTO), Last.fm 1K listening histories,
generic delimited and JSON lines files, synthetic sequences."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_datasets(register):
    from recbench_datasets.amazon import AMAZON_DATASETS
    from recbench_datasets.file import FileDataset
    from recbench_datasets.jsonl import JsonLinesDataset
    from recbench_datasets.lastfm import LASTFM_DATASETS
    from recbench_datasets.movielens import MOVIELENS_DATASETS
    from recbench_datasets.sessions import SESSION_DATASETS
    from recbench_datasets.synthetic import SyntheticDataset

    for dataset in MOVIELENS_DATASETS:
        register(dataset)
    for dataset in SESSION_DATASETS:
        register(dataset)
    for dataset in AMAZON_DATASETS:
        register(dataset)
    for dataset in LASTFM_DATASETS:
        register(dataset)
    register(FileDataset)
    register(JsonLinesDataset)
    register(SyntheticDataset)
