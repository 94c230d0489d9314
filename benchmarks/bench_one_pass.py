"""One-pass iterative evaluation of the recurrent models against popularity.

For each dataset the script prepares and splits it as a run does (seed 0), trains
``pop``, ``lstm``, ``gru4rec`` and ``mlstm`` (``--epochs`` epochs, default options
otherwise, no early stopping: the speed of evaluation does not depend on the training)
and times the iterative evaluation of the same test queries (nine metrics at 10 and 20,
seen items excluded, pessimistic ties, the default batch size):

- ``pop``: its per-query ``score``;
- each recurrent model with ``eval.prefixes=window`` (one ``score`` per query over its
  last ``max_length`` items) and ``history`` (one pass over each user's sequence,
  ``score_prefixes``).

``--metrics`` also trains ``lstm`` with ``--metric-epochs`` epochs and reports how much
the iterative metrics differ between the two semantics, overall and over the queries
whose prefix is longer than ``max_length`` (the only ones that can differ).

Run it on purpose (it is not part of the test suite), one thread::

    OMP_NUM_THREADS=1 RECBENCH_DATA=/data python benchmarks/bench_one_pass.py \\
        --datasets ml-100k,file:ml-1m/ratings.users0001-2999.dat.gz,synthetic:small --metrics
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_rnn import build_model, fit_context, prepare

from recbench.data.protocols import build_queries
from recbench.progress import Progress
from recbench.tasks.ranking.evaluation import evaluate

CUTOFFS = (10, 20)
CPU = torch.device("cpu")
MODELS = ("lstm", "gru4rec", "mlstm")
SHOWN = ("mrr@20", "sps@10", "recall@20", "ndcg@20")


def evaluated(registry: Any, model: Any, queries: Any, one_pass: bool) -> Any:
    metrics = {m: registry.get("metric", m).cls() for m in ("mrr", "sps", "recall", "ndcg",
                                                             "hit", "precision")}  # fmt: skip
    return evaluate(
        model,
        queries,
        metrics,
        cutoffs=CUTOFFS,
        item_counts=queries.sequences.item_counts(),
        device=CPU,
        exclude_seen=True,
        ties="pessimistic",
        progress=Progress.silent(),
        one_pass=one_pass,
    )


def seconds(registry: Any, model: Any, queries: Any, one_pass: bool) -> tuple[float, float]:
    """Wall and CPU (``time.process_time``) seconds of one evaluation: on a shared
    machine the CPU time is the steadier of the two."""
    started, started_cpu = time.perf_counter(), time.process_time()
    evaluated(registry, model, queries, one_pass)
    return time.perf_counter() - started, time.process_time() - started_cpu


def trained(registry: Any, split: Any, label: str, epochs: int) -> Any:
    model = build_model(registry, label, {"epochs": epochs} if label != "pop" else {})
    model.fit(split.train, None, fit_context(split.train, CPU, registry))
    return model


def timing(
    dataset: str,
    cache: Path,
    epochs: int,
    repeats: int,
    window: bool,
    options: dict[str, str] | None = None,
) -> None:
    registry, split = prepare(dataset, cache, options)
    queries = build_queries("iterative", split.test)
    long = float(np.mean(queries.input_length > 200))
    models = {label: trained(registry, split, label, epochs) for label in ("pop", *MODELS)}
    paths = (False, True) if window else (True,)
    runs: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for _ in range(repeats):  # interleaved
        runs.setdefault(("pop", False), []).append(seconds(registry, models["pop"], queries, False))
        for label in MODELS:
            for one_pass in paths:
                runs.setdefault((label, one_pass), []).append(
                    seconds(registry, models[label], queries, one_pass)
                )
    wall = {key: statistics.median(w for w, _ in values) for key, values in runs.items()}
    cpu = {key: statistics.median(c for _, c in values) for key, values in runs.items()}
    shown = dataset + "".join(f" {key}={value}" for key, value in (options or {}).items())
    print(f"\n{shown}: {len(queries):,} iterative queries of {len(split.test):,} test users, "
          f"{split.test.n_items:,} items, {long:.0%} with a prefix > 200; median of {repeats}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| model | window s | history (one pass) s | history CPU s | history / pop | "
          "history / pop (CPU) | window / pop |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    pop, pop_cpu = wall[("pop", False)], cpu[("pop", False)]
    print(f"| pop | {pop:.2f} | — | {pop_cpu:.2f} | 1.00 | 1.00 | 1.00 |")
    for label in MODELS:
        history, history_cpu = wall[(label, True)], cpu[(label, True)]
        old = wall.get((label, False))
        print(f"| {label} | {'—' if old is None else f'{old:.2f}'} | {history:.2f} | "
              f"{history_cpu:.2f} | {history / pop:.2f} | {history_cpu / pop_cpu:.2f} | "
              f"{'—' if old is None else f'{old / pop:.2f}'} |")  # fmt: skip


def metric_difference(dataset: str, cache: Path, epochs: int) -> None:
    registry, split = prepare(dataset, cache)
    queries = build_queries("iterative", split.test)
    model = trained(registry, split, "lstm", epochs)
    history = evaluated(registry, model, queries, True).per_query
    window = evaluated(registry, model, queries, False).per_query
    long = queries.input_length > model.max_length
    print(f"\n{dataset}: lstm, {epochs} epochs, {len(queries):,} queries, "
          f"{long.mean():.1%} longer than max_length {model.max_length}")  # fmt: skip
    print("| metric | history | window | difference | on prefixes > max_length: history | window |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in SHOWN:
        h, w = history[name], window[name]
        print(f"| {name} | {h.mean():.4f} | {w.mean():.4f} | {h.mean() - w.mean():+.4f} | "
              f"{h[long].mean():.4f} | {w[long].mean():.4f} |")  # fmt: skip
    differs = np.zeros(len(queries), dtype=bool)
    for name in history:
        differs |= history[name] != window[name]
    print(f"Long queries with any per-query metric value that differs: {differs[long].sum():,} "
          f"of {long.sum():,}")  # fmt: skip
    state_difference(model, queries, np.flatnonzero(long))


def state_difference(model: Any, queries: Any, long: np.ndarray, sample: int = 256) -> None:
    """How far the whole-history scores of long prefixes are from the window's: the
    largest absolute score difference against the scores' spread, and how many top-20
    lists differ, on up to ``sample`` evenly spaced long queries."""
    if len(long) == 0:
        return
    index = long[np.linspace(0, len(long) - 1, min(sample, len(long))).astype(np.int64)]
    with torch.no_grad():
        whole = model.score(queries.model_inputs(index, None, CPU))[:, 1:]
        window = model.score(queries.model_inputs(index, model.max_length, CPU))[:, 1:]
    top_whole = torch.topk(whole, 20, dim=1).indices
    top_window = torch.topk(window, 20, dim=1).indices
    print(f"On {len(index)} long queries: max |score difference| "
          f"{(whole - window).abs().max().item():.3g} (score std {whole.std().item():.3g}); "
          f"top-20 lists that differ: {int((top_whole != top_window).any(dim=1).sum())}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,synthetic:small")
    parser.add_argument(
        "--dataset-options",
        default="",
        help="KEY=VALUE,... for every dataset of --datasets, e.g. "
        "size=ml-20m,n_users=6000,n_events=866000 with --datasets synthetic",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("--metric-datasets", default="ml-100k")
    parser.add_argument("--metric-epochs", type=int, default=5)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--no-window", action="store_true", help="time only the one-pass path (not per query)"
    )
    args = parser.parse_args()
    options = dict(pair.split("=", 1) for pair in args.dataset_options.split(",") if pair)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    with tempfile.TemporaryDirectory() as cache:
        if not args.skip_timing:
            for dataset in args.datasets.split(","):
                timing(dataset, Path(cache), args.epochs, args.repeats, not args.no_window, options)
        if args.metrics:
            for dataset in args.metric_datasets.split(","):
                metric_difference(dataset, Path(cache), args.metric_epochs)


if __name__ == "__main__":
    main()
