"""Evaluation throughput (queries per second) of the iterative protocol.

The model is the popularity baseline (one constant score vector per batch), so the numbers
measure the evaluator itself -- input gathering, seen-item exclusion, the tie policy,
top-k and the nine ranking metrics at cutoffs 10 and 20 -- not a model. Two catalogues:

- ML-100K, prepared as a run prepares it (default preprocessing) from
  ``$RECBENCH_DATA/ml-100k``; every user's sequence is a query source;
- a synthetic catalogue the size of ML-20M's (26,744 items), random sequences.

Run it on purpose (it is not part of the test suite)::

    RECBENCH_DATA=/path/to/data python benchmarks/bench_evaluation.py [--threads 1 2]

Every configuration runs ``--repeats`` times, interleaved, and the median is reported.
Keep the machine otherwise idle: a busy second core slows multi-threaded torch badly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from recbench_baselines.popularity import Popularity
from recbench_metrics.ranking_metrics import RANKING_METRICS

from recbench.config.settings import Settings
from recbench.contracts import FitContext
from recbench.data.interactions import Sequences
from recbench.data.prepare import prepare_dataset
from recbench.data.preprocess import PreprocessOptions
from recbench.data.protocols import Queries, build_queries
from recbench.progress import Progress
from recbench.registry import discover
from recbench.tasks.ranking.evaluation import evaluate

CUTOFFS = (10, 20)
CPU = torch.device("cpu")


def ml100k_sequences(data_root: Path) -> Sequences:
    with tempfile.TemporaryDirectory() as cache_root:
        settings = Settings(data_root=data_root, cache_root=Path(cache_root), offline=True)
        prepared = prepare_dataset(
            "ml-100k", {}, PreprocessOptions(), discover(), settings, Progress.silent()
        )
    return prepared.sequences


def synthetic_sequences(n_users: int, n_items: int, mean_length: int, seed: int) -> Sequences:
    """Random sequences without repeated items, Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.geometric(1 / mean_length, n_users), 2, n_items // 2).astype(np.int64)
    popularity = 1.0 / np.arange(1, n_items + 1)
    items = np.concatenate(
        [
            rng.choice(n_items, size=n, replace=False, p=popularity / popularity.sum()) + 1
            for n in lengths
        ]
    )
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        items=items,
        users=np.arange(n_users),
        n_items=n_items,
    )


def queries_per_second(queries: Queries, threads: int) -> float:
    torch.set_num_threads(threads)
    item_counts = queries.sequences.item_counts()
    model = Popularity()
    model.fit(
        queries.sequences,
        None,
        FitContext(n_items=queries.sequences.n_items, device=CPU, seed=0, item_counts=item_counts),
    )
    result = evaluate(
        model,
        queries,
        {cls.id: cls() for cls in RANKING_METRICS},
        cutoffs=CUTOFFS,
        item_counts=item_counts,
        device=CPU,
        exclude_seen=True,
        ties="pessimistic",
        progress=Progress.silent(),
    )
    return result.queries_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic-users", type=int, default=500)
    args = parser.parse_args()

    workloads: dict[str, Queries] = {}
    data_root = os.environ.get("RECBENCH_DATA")
    if data_root and (Path(data_root) / "ml-100k").is_dir():
        sequences = ml100k_sequences(Path(data_root))
        workloads[f"ml-100k ({sequences.n_items:,} items)"] = build_queries("iterative", sequences)
    else:
        print("RECBENCH_DATA/ml-100k not found: skipping ML-100K")
    synthetic = synthetic_sequences(args.synthetic_users, 26_744, 144, seed=0)
    workloads["synthetic (26,744 items)"] = build_queries("iterative", synthetic)

    print(
        f"torch {torch.__version__}, iterative protocol, cutoffs {CUTOFFS}, seen items "
        f"excluded, pessimistic ties, {len(RANKING_METRICS)} metrics, default batch size"
    )
    for name, queries in workloads.items():
        timings: dict[int, list[float]] = {threads: [] for threads in args.threads}
        for _ in range(args.repeats):
            for threads in args.threads:
                timings[threads].append(queries_per_second(queries, threads))
        for threads, values in timings.items():
            print(
                f"{name}: {len(queries):,} queries, {threads} thread(s): "
                f"{statistics.median(values):,.0f} queries/s (median of {len(values)})"
            )


if __name__ == "__main__":
    main()
