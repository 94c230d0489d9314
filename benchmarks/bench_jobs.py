"""Wall time of a grid of baselines x seeds with ``--jobs 1`` and ``--jobs N``.

Runs ``recbench run`` on the same grid twice -- one fit after another in one process,
then N worker processes -- interleaved ``--repeats`` times, each into a fresh run
directory, with the derived-data cache warmed first; prints the medians, the speed-up
and the machine's load average, and checks that both give the same metrics.

Usage::

    python benchmarks/bench_jobs.py --dataset ml-100k --models pop,itemknn,markov \\
        --seeds 0,1,2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: argparse.Namespace, out: Path, jobs: int) -> float:
    command = [
        sys.executable,
        "-m",
        "recbench.cli",
        "run",
        "--models",
        args.models,
        "--dataset",
        args.dataset,
        "--seeds",
        args.seeds,
        "--protocols",
        args.protocols,
        "--no-export",
        "--quiet",
        "--threads",
        str(jobs * args.threads),
        "--jobs",
        str(jobs),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def means(out: Path) -> dict[str, float]:
    result = {}
    for path in sorted((out / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        for name, entry in cell.get("metrics", {}).items():
            result[f"{path.stem}/{name}"] = entry["mean"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default="pop,itemknn,markov")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="half-split,iterative")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run(args, root / "warm-up", 1)  # fills the derived-data cache
        times: dict[int, list[float]] = {1: [], args.jobs: []}
        for repeat in range(args.repeats):
            for jobs in times:
                times[jobs].append(run(args, root / f"jobs{jobs}-{repeat}", jobs))
        same = means(root / "jobs1-0") == means(root / f"jobs{args.jobs}-0")
    sequential, parallel = statistics.median(times[1]), statistics.median(times[args.jobs])
    print(f"grid: {args.models} x seeds {args.seeds} on {args.dataset} ({args.protocols})")
    print(f"cpus: {os.cpu_count()}, load average after: {os.getloadavg()}")
    for jobs, values in times.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"--jobs {jobs}: median {statistics.median(values):.1f} s ({shown})")
    print(f"speed-up: {sequential / parallel:.2f}x; same metrics: {same}")


if __name__ == "__main__":
    main()
