"""Trials per minute of ``recbench tune`` for a neural model, with and without pruning.

Tunes one model (default ``lstm``) on one dataset twice with the same seeded sampler and
the same number of trials -- once with the median pruner (the default), once with
``--no-pruning`` -- each into a fresh folder, and prints per variant: wall time, trials
per minute, trials completed and pruned, epochs trained in all, and the best validation
value reached (pruning must buy speed without losing the best configuration), and the
CPU time the process used (trials per CPU minute is the figure that survives a machine
shared with other jobs). The derived-data cache is warmed first; run it on purpose,
ideally on an otherwise idle machine::

    OMP_NUM_THREADS=1 RECBENCH_DATA=/data python benchmarks/bench_tuning.py \\
        --model lstm --dataset ml-100k --trials 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from recbench import api
from recbench.tuning.study import open_storage, storage_url


def tune(args: argparse.Namespace, out: Path, pruning: bool) -> dict[str, float]:
    started, cpu_started = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()[0]
    api.tune(
        [args.model],
        args.dataset,
        out=out,
        trials=args.trials,
        metric=args.metric,
        seed=args.seed,
        pruning=pruning,
        device="cpu",
        quiet=True,
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    study = optuna.load_study(study_name=args.model, storage=open_storage(storage_url(out, None)))
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    return {
        "seconds": seconds,
        "trials_per_minute": len(trials) / (seconds / 60.0),
        "cpu_seconds": cpu_seconds,
        "trials_per_cpu_minute": len(trials) / (cpu_seconds / 60.0),
        "load": (load_before + os.getloadavg()[0]) / 2,
        "completed": len(completed),
        "pruned": len(pruned),
        "failed": len(trials) - len(completed) - len(pruned),
        "epochs": sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
        "best": study.best_value if completed else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--metric", default="mrr@20")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        api.tune(["pop"], args.dataset, out=Path(tmp) / "warm", trials=1, quiet=True)
        rows = {
            "median pruner": tune(args, Path(tmp) / "pruned", True),
            "no pruning": tune(args, Path(tmp) / "unpruned", False),
        }
    print(
        f"{args.model} on {args.dataset}, {args.trials} trials, seed {args.seed}, validation "
        f"{args.metric}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| pruning | wall time | trials/min | CPU time | trials/CPU min | load | completed "
        "| pruned | failed | epochs | best |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds'] / 60:.1f} min | {row['trials_per_minute']:.2f} | "
            f"{row['cpu_seconds'] / 60:.1f} min | {row['trials_per_cpu_minute']:.2f} | "
            f"{row['load']:.1f} | {row['completed']} | {row['pruned']} | {row['failed']} | "
            f"{row['epochs']} | {row['best']:.4f} |"
        )


if __name__ == "__main__":
    main()
