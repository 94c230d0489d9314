"""Datasets: MovieLens (100K, 1M, 10M, 20M, 25M), generic files, synthetic sequences."""

from __future__ import annotations

from recbench import hookimpl


@hookimpl
def register_datasets(register):
    from recbench_datasets.file import FileDataset
    from recbench_datasets.movielens import MOVIELENS_DATASETS
    from recbench_datasets.synthetic import SyntheticDataset

    for dataset in MOVIELENS_DATASETS:
        register(dataset)
    register(FileDataset)
    register(SyntheticDataset)
