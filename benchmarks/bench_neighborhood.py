"""Throughput of the session-kNN baselines (``sknn``, ``vsknn``) on the iterative protocol.

For each model and dataset it measures, each in a fresh Python process:

- fit time (seconds) and queries per second of the whole evaluation (scoring, ranking
  and the sps / mrr / recall metrics at 10 and 20, as a run computes them) with torch
  limited to 1 and to 2 threads;
- peak resident memory (RSS) of the process, and its RSS before the model was built
  (interpreter, torch and the prepared data), so the model's share can be read off;
- the queries per second of the straightforward per-query implementation of the same
  definition (``tests/baseline_oracles.py``, the tests' oracle) on an evenly spaced
  sample of the queries, for the speed-up ratio.

Datasets, prepared as a run prepares them (default preprocessing, user split, seed 0):
ML-100K and the 2,999-user MovieLens 1M file ``ml-1m/ratings.users0001-2999.dat.gz``
(loaded with ``--dataset file:...``), both from ``$RECBENCH_DATA``. Run it on purpose (it
is not part of the test suite)::

    RECBENCH_DATA=/path/to/data python benchmarks/bench_neighborhood.py [--repeats 3]

Every configuration runs ``--repeats`` times, interleaved, and the median is reported
with the 1-minute load average seen by the runs: on a shared machine the numbers are
only as good as that load. The output is a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASETS = {
    "ML-100K": "ml-100k",
    "ML-1M, users 1-2999": "file:ml-1m/ratings.users0001-2999.dat.gz",
}
MODELS = ("sknn", "vsknn")
HERE = Path(__file__).resolve().parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def prepared_split(dataset: str, data_root: Path) -> Any:
    from recbench.config.settings import Settings
    from recbench.data.prepare import prepare_dataset
    from recbench.data.preprocess import PreprocessOptions
    from recbench.data.splits import SplitOptions, make_split
    from recbench.progress import Progress
    from recbench.registry import discover

    with tempfile.TemporaryDirectory() as cache_root:
        settings = Settings(data_root=data_root, cache_root=Path(cache_root), offline=True)
        prepared = prepare_dataset(
            dataset, {}, PreprocessOptions(), discover(), settings, Progress.silent()
        )
    return make_split(prepared.sequences, SplitOptions(), seed=0)


def sample_queries(queries: Any, count: int) -> Any:
    """An evenly spaced sample of ``count`` queries (all when there are fewer)."""
    import numpy as np

    from recbench.data.protocols import Queries

    if count <= 0 or count >= len(queries):
        return queries
    pick = np.linspace(0, len(queries) - 1, count).astype(np.int64)
    return Queries(
        protocol=queries.protocol,
        sequences=queries.sequences,
        row=queries.row[pick],
        input_length=queries.input_length[pick],
        n_targets=queries.n_targets[pick],
    )


def measure(model_id: str, dataset: str, threads: int, oracle_queries: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import torch
    from recbench_metrics.ranking_metrics import RANKING_METRICS

    from recbench.contracts import FitContext
    from recbench.data.protocols import build_queries
    from recbench.progress import Progress
    from recbench.registry import discover
    from recbench.tasks.ranking.evaluation import evaluate

    torch.set_num_threads(threads)
    split = prepared_split(dataset, Path(os.environ["RECBENCH_DATA"]))
    queries = build_queries("iterative", split.test)
    item_counts = split.train.item_counts()
    ctx = FitContext(split.train.n_items, torch.device("cpu"), 0, item_counts)
    metrics = {cls.id: cls() for cls in RANKING_METRICS if cls.id in ("sps", "mrr", "recall")}
    rss_before = peak_rss_mib()

    if oracle_queries:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from baseline_oracles import OracleSessionKNN, PerQueryModel

        info = discover().get("model", model_id)
        default = info.cls()
        model: Any = PerQueryModel(
            OracleSessionKNN(weighted=model_id == "vsknn"), default.max_length
        )
        queries = sample_queries(queries, oracle_queries)
    else:
        model = discover().get("model", model_id).cls()
    started = time.perf_counter()
    model.fit(split.train, None, ctx)
    fit_seconds = time.perf_counter() - started
    result = evaluate(
        model,
        queries,
        metrics,
        cutoffs=(10, 20),
        item_counts=item_counts,
        device=torch.device("cpu"),
        exclude_seen=True,
        progress=Progress.silent(),
    )
    return {
        "fit_seconds": fit_seconds,
        "queries": len(queries),
        "queries_per_second": result.queries_per_second,
        "sps@10": result.summaries["sps@10"].mean,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "load_average": os.getloadavg()[0],
    }


def run_child(model_id: str, dataset: str, threads: int, oracle_queries: int) -> dict[str, Any]:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([model_id, dataset, threads, oracle_queries]),
    ]
    output = subprocess.run(
        command, env=environment, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--oracle-queries",
        type=int,
        default=300,
        help="queries the per-query implementation answers (evenly spaced sample)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    data_root = os.environ.get("RECBENCH_DATA")
    if not data_root:
        sys.exit("set RECBENCH_DATA to the folder holding ml-100k/ and ml-1m/")

    rows = []
    for label, dataset in DATASETS.items():
        for model_id in MODELS:
            runs: dict[Any, list[dict[str, Any]]] = {t: [] for t in args.threads}
            runs["oracle"] = []
            for _ in range(args.repeats):
                for threads in args.threads:
                    runs[threads].append(run_child(model_id, dataset, threads, 0))
                runs["oracle"].append(run_child(model_id, dataset, 1, args.oracle_queries))
            rows.append((label, model_id, runs))
            print(f"measured {model_id} on {label}", file=sys.stderr, flush=True)

    def median(values: list[dict[str, Any]], key: str) -> float:
        return statistics.median(v[key] for v in values)

    first = args.threads[0]
    header = (
        ["model", "dataset", "queries", "fit s"]
        + [f"queries/s, {t} thread{'s' if t > 1 else ''}" for t in args.threads]
        + ["peak RSS MiB (before fit)", "per-query oracle queries/s", "speed-up", "load avg"]
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, model_id, runs in rows:
        fast = median(runs[first], "queries_per_second")
        oracle = median(runs["oracle"], "queries_per_second")
        every = [r for key in runs for r in runs[key]]
        loads = [r["load_average"] for r in every]
        cells = [
            model_id,
            label,
            f"{runs[first][0]['queries']:,}",
            f"{median(runs[first], 'fit_seconds'):.2f}",
            *[f"{median(runs[t], 'queries_per_second'):,.0f}" for t in args.threads],
            f"{median(runs[first], 'peak_rss_mib'):,.0f} "
            f"({median(runs[first], 'rss_before_mib'):,.0f})",
            f"{oracle:,.1f} ({runs['oracle'][0]['queries']:,} queries)",
            f"{fast / oracle:,.0f}x",
            f"{min(loads):.2f}-{max(loads):.2f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
