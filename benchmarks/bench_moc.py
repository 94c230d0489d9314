"""Training speed of the Mixture of Cosines model (``moc``) and its item2vec pre-training.

Run on purpose (it is not part of the test suite)::

    RECBENCH_DATA=/path/to/data python benchmarks/bench_moc.py                 # ML-100K, CPU
    python benchmarks/bench_moc.py --datasets ml-100k,file:ml-1m/ratings.users0001-2999.dat.gz
    python benchmarks/bench_moc.py --device cuda --rounds 5                    # on a GPU

What it measures, on each dataset split like a run (80% training users, seed 0), with
``moc``'s default options (full softmax over the catalogue, item vectors 64, GRU 128,
batch 224, windows of up to 200 items):

* **epoch time** of ``moc`` at K = 1, 2, 4, 8 mixtures (``--mixtures``), interleaved
  round by round in one process so that a busy machine slows every K alike; the first
  round warms up and the median of the next ``--rounds`` epochs is reported, with
  predictions (trained positions) per second and the ratio to K = 1;
* **item2vec pre-training**: the default 5 epochs of skip-gram with negative sampling
  (window 5, 5 negatives, batches of 4,096 pairs) on the training sequences, the median
  of ``--item2vec-rounds`` runs, with (centre, context) pairs per second.

``os.getloadavg()`` is recorded before and after every measurement: on a shared machine,
compare numbers only within one run. Prints markdown tables (``--json FILE`` also writes
the raw numbers). Preparing a dataset and timing on a device work as in ``bench_rnn.py``,
whose helpers it imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from bench_rnn import fit_context, markdown_table, prepare, synchronize


def time_item2vec(train: Any, device: torch.device, rounds: int) -> dict[str, Any]:
    """The default item2vec pre-training of ``moc``, ``rounds`` times."""
    from recbench_rnn.item2vec import train_item2vec
    from recbench_rnn.moc import MoCOptions

    options = MoCOptions().item2vec()
    seconds: list[float] = []
    loads = [os.getloadavg()]
    pairs = 0
    for _ in range(rounds):
        synchronize(device)
        started = time.perf_counter()
        result = train_item2vec(train, options, device=device, seed=0)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        pairs = result.pairs_per_epoch
    loads.append(os.getloadavg())
    median = statistics.median(seconds)
    return {
        "seconds": median,
        "seconds_all": seconds,
        "epochs": options.epochs,
        "pairs_per_epoch": pairs,
        "pairs_per_second": pairs * options.epochs / median,
        "loadavg": loads,
    }


def time_epochs(
    mixtures: list[int], registry: Any, split: Any, device: torch.device, rounds: int
) -> dict[int, dict[str, Any]]:
    """Interleaved single epochs of ``moc`` at every K; per K the epoch records."""
    from recbench_rnn.moc import MoCModel, MoCOptions

    from recbench.train.trainer import fit_network

    train = split.train
    ctx = fit_context(train, device, registry)
    models = {}
    for k in mixtures:
        model = MoCModel(replace(MoCOptions(), mixtures=k, epochs=1))
        torch.manual_seed(0)
        network = model.build_network(train.n_items).to(device)  # random item vectors
        model.network = network
        models[k] = (model, network)
    records: dict[int, list[Any]] = {k: [] for k in mixtures}
    loads = [os.getloadavg()]
    for _ in range(rounds + 1):  # the first round warms up (allocations, caches)
        for k, (model, network) in models.items():
            synchronize(device)
            history = fit_network(model, network, train, ctx, model.options, name=f"K={k}")
            synchronize(device)
            records[k].append(history.epochs[0])
    loads.append(os.getloadavg())
    out = {}
    for k in mixtures:
        measured = records[k][1:]
        seconds = statistics.median(r.seconds for r in measured)
        out[k] = {
            "epoch_seconds": seconds,
            "epoch_seconds_all": [r.seconds for r in records[k]],
            "predictions": measured[0].predictions,
            "predictions_per_second": measured[0].predictions / seconds,
            "loadavg": loads,
        }
    return out


def bench_dataset(args: argparse.Namespace, dataset: str, device: torch.device) -> dict[str, Any]:
    started_load = os.getloadavg()
    registry, split = prepare(dataset, args.cache)
    train = split.train
    item2vec = time_item2vec(train, device, args.item2vec_rounds)
    timing = time_epochs(args.mixtures, registry, split, device, args.rounds)
    ended_load = os.getloadavg()
    name = str(device) + (
        f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    )
    print(f"\n## moc: {dataset}, {name}, {args.threads} thread(s)\n")
    print(
        f"torch {torch.__version__}; {len(train):,} training users, {train.n_events:,} "
        f"events, {train.n_items:,} items; load average {started_load[0]:.2f} at the "
        f"start, {ended_load[0]:.2f} at the end\n"
    )
    base = timing[min(timing)]["epoch_seconds"]
    rows = [
        [
            k,
            f"{entry['epoch_seconds']:.2f}",
            f"{entry['epoch_seconds'] / base:.2f}",
            f"{entry['predictions_per_second']:,.0f}",
            " / ".join(f"{s:.2f}" for s in entry["epoch_seconds_all"]),
        ]
        for k, entry in timing.items()
    ]
    print(
        markdown_table(
            [
                "mixtures K",
                "epoch s (median)",
                f"vs K={min(timing)}",
                "predictions/s",
                "all epochs s (first = warm-up)",
            ],
            rows,
        )
    )
    epoch_loads = timing[min(timing)]["loadavg"]
    print(f"\nload average {epoch_loads[0][0]:.2f} -> {epoch_loads[1][0]:.2f} (epochs)\n")
    print(
        markdown_table(
            ["item2vec", "epochs", "pairs per epoch", "seconds (median)", "pairs/s", "all runs s"],
            [
                [
                    "pre-training",
                    item2vec["epochs"],
                    f"{item2vec['pairs_per_epoch']:,}",
                    f"{item2vec['seconds']:.2f}",
                    f"{item2vec['pairs_per_second']:,.0f}",
                    " / ".join(f"{s:.2f}" for s in item2vec["seconds_all"]),
                ]
            ],
        )
    )
    loads = item2vec["loadavg"]
    print(f"\nload average {loads[0][0]:.2f} -> {loads[1][0]:.2f} (item2vec)")
    return {
        "dataset": dataset,
        "device": name,
        "threads": args.threads,
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "train_users": len(train),
        "train_events": train.n_events,
        "n_items": train.n_items,
        "loadavg_start": started_load,
        "loadavg_end": ended_load,
        "epochs": timing,
        "item2vec": item2vec,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ml-100k", help="comma-separated dataset ids")
    parser.add_argument("--mixtures", default="1,2,4,8", help="values of K to time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="measured epochs per K")
    parser.add_argument("--item2vec-rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.mixtures = [int(k) for k in args.mixtures.split(",") if k.strip()]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = args.cache or Path(tmp)
        for dataset in (d.strip() for d in args.datasets.split(",")):
            if dataset:
                results.append(bench_dataset(args, dataset, device))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
