"""Time and memory of the data pipeline at MovieLens-20M size.

Run on purpose (it is not part of the test suite)::

    python benchmarks/bench_data_pipeline.py                      # synthetic, ML-20M size
    python benchmarks/bench_data_pipeline.py --dataset synthetic:ml-1m --threads 2
    RECBENCH_DATA=~/data python benchmarks/bench_data_pipeline.py --dataset ml-20m

Each measurement runs in a fresh process, so that its peak resident memory
(``ru_maxrss``) is its own:

* **cold**: load the events (generate them, or parse the raw file), preprocess them
  (default filters), compute the statistics and write the cache, then split the users;
* **warm**: read the same dataset from the cache, then split.

Raw files are read from ``RECBENCH_DATA`` (offline: nothing is downloaded). The cache
lives in a temporary folder that is removed at the end (``--cache`` keeps one). Prints a
markdown table. Targets on a 2-core machine: load + preprocess + split under 60 s and
under 3 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_phase(phase: str, dataset: str, cache: Path, threads: int) -> dict[str, Any]:
    """Prepare the dataset (cold or warm, depending on the cache) and split it."""
    import numpy as np
    import torch

    import recbench.data.prepare as data
    from recbench.config.settings import Settings
    from recbench.data.preprocess import PreprocessOptions
    from recbench.progress import Progress
    from recbench.registry import discover

    torch.set_num_threads(threads)
    timings: dict[str, float] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    # Break the run down by step without changing what it does.
    data.preprocess = timed("preprocess", data.preprocess)  # type: ignore[assignment]
    data.dataset_statistics = timed("statistics", data.dataset_statistics)  # type: ignore[assignment]
    data._write_cache = timed("cache write", data._write_cache)  # type: ignore[assignment]
    registry = discover()
    dataset_cls = registry.get("dataset", dataset.partition(":")[0]).cls
    dataset_cls.load = timed("load", dataset_cls.load)  # type: ignore[attr-defined]

    data_root = Settings.from_environ().data_root
    settings = Settings(data_root=data_root, cache_root=cache / "cache", offline=True)
    started = time.perf_counter()
    prepared = data.prepare_dataset(
        dataset, {}, PreprocessOptions(), registry, settings, Progress.silent()
    )
    result: dict[str, Any] = {
        "phase": phase,
        "prepare": time.perf_counter() - started,
        "steps": timings,
        "events": prepared.sequences.n_events,
        "users": len(prepared.sequences),
        "items": prepared.sequences.n_items,
        "peak_after_prepare_mib": peak_rss_mib(),
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    try:
        from recbench.data.splits import SplitOptions, make_split
    except ImportError:  # the splits module is not there yet
        result["split"] = None
    else:
        started = time.perf_counter()
        make_split(prepared.sequences, SplitOptions(), seed=0)
        result["split"] = time.perf_counter() - started
    result["peak_mib"] = peak_rss_mib()
    return result


def run_phase(phase: str, dataset: str, cache: Path, threads: int) -> dict[str, Any]:
    """Run one phase in a fresh interpreter and return what it measured."""
    command = [sys.executable, __file__, "--phase", phase, "--dataset", dataset]
    command += ["--cache", str(cache), "--threads", str(threads)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        sys.exit(f"the {phase} phase failed:\n{finished.stderr}")
    line = next(x for x in finished.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
    result["process"] = time.perf_counter() - started
    return result


def table(cold: dict[str, Any], warm: dict[str, Any], dataset: str, threads: int) -> str:
    """The measurements as a markdown table with the environment above it."""

    def seconds(value: float | None) -> str:
        return "n/a (no recbench.data.splits)" if value is None else f"{value:.2f}"

    cold_total = cold["prepare"] + (cold["split"] or 0.0)
    warm_total = warm["prepare"] + (warm["split"] or 0.0)
    lines = [
        f"Data pipeline, `{dataset}`: {cold['events']:,} events, {cold['users']:,} users, "
        f"{cold['items']:,} items after default preprocessing.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {cold['numpy']}, torch {cold['torch']}, "
        f"torch threads {cold['torch_threads']}, OMP_NUM_THREADS={threads}.",
        "",
        "| phase | step | wall s | peak RSS MiB |",
        "|---|---|---:|---:|",
    ]
    for step in ("load", "preprocess", "statistics", "cache write"):
        lines.append(f"| cold | {step} | {cold['steps'].get(step, 0.0):.2f} | |")
    lines += [
        f"| cold | prepare total | {cold['prepare']:.2f} | {cold['peak_after_prepare_mib']:,.0f} |",
        f"| cold | split (users, 10% / 10%) | {seconds(cold['split'])} | {cold['peak_mib']:,.0f} |",
        f"| cold | **prepare + split** | **{cold_total:.2f}** | **{cold['peak_mib']:,.0f}** |",
        f"| warm | cache read | {warm['prepare']:.2f} | {warm['peak_after_prepare_mib']:,.0f} |",
        f"| warm | split | {seconds(warm['split'])} | {warm['peak_mib']:,.0f} |",
        f"| warm | **read + split** | **{warm_total:.2f}** | **{warm['peak_mib']:,.0f}** |",
        "",
        f"Whole processes, with interpreter start and imports: cold {cold['process']:.1f} s, "
        f"warm {warm['process']:.1f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--dataset", default="synthetic:ml-20m", help="dataset string (default synthetic:ml-20m)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads (default 1)")
    parser.add_argument(
        "--cache", type=Path, help="cache folder to use and keep (default: temporary)"
    )
    parser.add_argument("--phase", choices=("cold", "warm"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.phase:
        result = measure_phase(
            arguments.phase, arguments.dataset, arguments.cache, arguments.threads
        )
        print(RESULT_PREFIX + json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="recbench-bench-") as scratch:
        cache = arguments.cache or Path(scratch)
        cold = run_phase("cold", arguments.dataset, cache, arguments.threads)
        warm = run_phase("warm", arguments.dataset, cache, arguments.threads)
    print(table(cold, warm, arguments.dataset, arguments.threads))


if __name__ == "__main__":
    main()
