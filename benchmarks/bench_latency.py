"""Serving latency of one recurrent step (``lstm``, ``gru4rec``, ``mlstm``) against the
memory-bandwidth floor.

Run on purpose (it is not part of the test suite)::

    RECBENCH_DATA=/path/to/data python benchmarks/bench_latency.py
    python benchmarks/bench_latency.py --rounds 5 --json latency.json

What it measures, for each model at embedding (hidden) size 128 over two catalogues --
the items of MovieLens 100K after recbench's default preprocessing (read through
``RECBENCH_DATA``; its raw 1,682 items otherwise) and a 26,744-item catalogue (the size
of MovieLens 20M) -- one step of the model's cell (read one item per query, update the
state, score every item) in three runtimes:

* **torch, naive layout**: the scores as ``F.linear(h, E, b)`` over the item matrix in
  its training layout ``E`` ``[n_items + 1, D]``;
* **torch, best layout**: the cell as the model gives it, which keeps a contiguous
  ``[D, n_items + 1]`` copy of the item matrix (``addmm(b, h, E^T)``);
* **ONNX Runtime** (CPU): the exported ``cell.onnx`` (parity checked first).

at 1 and 2 threads, batch 1 (p50, p95, p99 of single calls) and batch 256 (queries per
second at the median call). Weights are random (latency does not depend on training).
Runtimes are interleaved round by round so that a busy machine slows them alike; the
numbers are medians over rounds of each round's percentiles.

**The floor.** One step must read the whole item matrix once: ``(n_items + 1) × D × 4``
bytes. The script measures this machine's read bandwidth (the sum of a 512 MiB float32
array: DRAM; and of an array of the item matrix's own size, read again and again: what
the caches give), prints the floor ``bytes / bandwidth`` at each thread count and each
runtime's distance to it (``p50 / floor``). Targets: the fastest runtime's batch-1 step
within 2× of the DRAM floor, and ``p99 / p50 ≤ 2``.

``os.getloadavg()`` is recorded before and after every measurement, and the share of the
machine's CPU time that other processes used during it ("others' CPU", the worst round;
:class:`recbench.serve.latency.MachineLoad`): on a shared machine compare numbers only within
one run, and distrust rows where others took much of the CPU.
"""

from __future__ import annotations

import argparse
import copy
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

import numpy as np
import torch
import torch.nn.functional as F

from recbench.serve import latency
from recbench.serve.export import (
    ExportOptions,
    export_and_check,
    onnx_versions,
    onnxruntime_session,
)

DIM = 128
BIG_CATALOGUE = 26_744
ML100K_RAW_ITEMS = 1_682
LARGE_BATCH = 256


def ml100k_items() -> tuple[int, str]:
    """Items of ML-100K after the default preprocessing, or its raw count."""
    if not os.environ.get("RECBENCH_DATA"):
        return ML100K_RAW_ITEMS, "ML-100K raw items (RECBENCH_DATA not set)"
    try:
        from recbench.api import load_registry
        from recbench.config.settings import Settings
        from recbench.data.prepare import prepare_dataset
        from recbench.data.preprocess import PreprocessOptions
        from recbench.progress import Progress

        settings = Settings.from_environ()
        data = prepare_dataset(
            "ml-100k",
            {},
            PreprocessOptions(),
            load_registry(settings),
            settings,
            Progress.silent(),
        )
        return int(data.sequences.n_items), "ML-100K after default preprocessing"
    except Exception as exc:  # no data: the raw count
        print(f"# ML-100K not prepared ({exc}); using its raw item count", file=sys.stderr)
        return ML100K_RAW_ITEMS, "ML-100K raw items"


def build_cell(model_id: str, n_items: int) -> torch.nn.Module:
    """The one-step cell of an untrained model with random weights, in eval mode."""
    from recbench_rnn.gru4rec import GRU4RecModel
    from recbench_rnn.lstm import LSTMModel
    from recbench_rnn.mlstm import MLSTMModel

    classes: dict[str, Any] = {"lstm": LSTMModel, "gru4rec": GRU4RecModel, "mlstm": MLSTMModel}
    cls = classes[model_id]
    size = {"hidden_size": DIM} if model_id == "gru4rec" else {"embedding_dim": DIM}
    model = cls(replace(cls.Options(), **size))
    torch.manual_seed(0)
    model.network = model.build_network(n_items).eval()
    cell = model.cell().eval()
    cell.requires_grad_(False)
    return cell


def naive_layout(cell: torch.nn.Module) -> torch.nn.Module:
    """The same cell scoring over the item matrix in its ``[n_items + 1, D]`` layout.

    Uses the cell's optional ``with_item_layout("items")`` when it has one; otherwise
    replaces ``scores`` of a copy (the rnn cells keep ``item_matrix`` ``[D, n_items + 1]``
    and ``item_bias``)."""
    variant = getattr(cell, "with_item_layout", None)
    if callable(variant):
        return variant("items")  # type: ignore[no-any-return]
    naive = copy.deepcopy(cell)
    weight = cell.item_matrix.t().contiguous()
    bias = cell.item_bias.clone()
    naive.scores = lambda hidden: F.linear(hidden, weight, bias)  # type: ignore[method-assign]
    return naive


# -- bandwidth ---------------------------------------------------------------------------


def read_bandwidth(n_bytes: int, threads: int, seconds: float = 1.0) -> float:
    """Bytes per second of ``torch.sum`` over a float32 array of ``n_bytes`` (the median
    of repeated sums; the array is written first so its pages exist)."""
    data = torch.ones(max(n_bytes // 4, 1024), dtype=torch.float32)
    with latency.torch_threads(threads):
        data.sum()
        times = []
        deadline = time.perf_counter() + seconds
        while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 2000):
            start = time.perf_counter()
            data.sum()
            times.append(time.perf_counter() - start)
    return data.numel() * 4 / statistics.median(times)


def matmul_rate(threads: int) -> float:
    """FLOP/s of a [256, 128] x [128, 26745] float32 product (the batch-256 scoring)."""
    a = torch.randn(LARGE_BATCH, DIM)
    b = torch.randn(DIM, BIG_CATALOGUE + 1)
    with latency.torch_threads(threads):
        for _ in range(3):
            a @ b
        times = []
        for _ in range(15):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
    return 2 * LARGE_BATCH * DIM * (BIG_CATALOGUE + 1) / statistics.median(times)


# -- measurements ------------------------------------------------------------------------


def measure(call_for_batch, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    before = latency.load_average()
    machine = latency.MachineLoad()
    with latency.torch_threads(threads):
        one = latency.time_calls(
            call_for_batch(1),
            warmup=50,
            repeats=args.repeats,
            min_repeats=200,
            max_seconds=args.seconds,
        )
        many = latency.time_calls(
            call_for_batch(LARGE_BATCH),
            warmup=3,
            repeats=args.batch_repeats,
            min_repeats=10,
            max_seconds=args.seconds,
        )
    return {
        "batch1": one.as_dict(),
        "batch": many.as_dict(),
        "qps": LARGE_BATCH / (many.p50_ms * 1e-3),
        "load_average": [before, latency.load_average()],
        "other_cpu_share": machine.other_share(),
    }


def busy(share: float | None) -> str:
    """The share of CPU time other processes used (the worst round), as text."""
    return "?" if share is None else f"{share:.0%}"


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    """The median over rounds of a batch-1 statistic."""
    return statistics.median(r["batch1"][key] for r in rounds)


def torch_calls(module: torch.nn.Module, cell: torch.nn.Module, n_columns: int):
    def make(batch: int):
        generator = torch.Generator().manual_seed(batch)
        items = torch.randint(1, n_columns, (batch,), generator=generator)
        state = cell.initial_state(batch)

        def call() -> Any:
            with torch.inference_mode():
                return module(items, *state)

        return call

    return make


def ort_calls(path: Path, exported, cell: torch.nn.Module, threads: int):
    session, _ = onnxruntime_session(path, device="cpu", threads=threads)

    def make(batch: int):
        generator = torch.Generator().manual_seed(batch)
        items = torch.randint(1, exported.n_columns, (batch,), generator=generator).numpy()
        state = [s.numpy() for s in cell.initial_state(batch)]
        feeds = dict(zip(exported.input_names, [items, *state], strict=True))
        return lambda: session.run(None, feeds)

    return make


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lstm,gru4rec,mlstm")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2000, help="batch-1 calls per round")
    parser.add_argument("--batch-repeats", type=int, default=40, help="batch-256 calls per round")
    parser.add_argument("--seconds", type=float, default=1.0, help="time cap per measurement")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    ml100k, ml100k_source = ml100k_items()
    catalogues = {"ML-100K": ml100k, "27k": BIG_CATALOGUE}
    env = latency.environment()
    print(f"# {env['cpu']}, {env['cpu_count']} logical CPUs, {platform.platform()}")
    versions = onnx_versions()
    print(
        f"# torch {torch.__version__}, onnxruntime {versions.get('onnxruntime')}, "
        f"onnx {versions.get('onnx')}, numpy {np.__version__}; "
        f"load average at start {latency.load_average()}"
    )
    print(f"# ML-100K catalogue: {ml100k:,} items ({ml100k_source}); big: {BIG_CATALOGUE:,} items")
    print(
        f"# {args.rounds} rounds; batch 1: up to {args.repeats} calls/round, batch "
        f"{LARGE_BATCH}: up to {args.batch_repeats}; cap {args.seconds}s per measurement"
    )

    # bandwidth first, on a machine as quiet as it gets
    bandwidth = {}
    for t in threads:
        dram = read_bandwidth(512 << 20, t)
        cached = {
            name: read_bandwidth((n + 1) * DIM * 4, t, seconds=0.5)
            for name, n in catalogues.items()
        }
        bandwidth[t] = {"dram": dram, "cached": cached, "matmul_flops": matmul_rate(t)}
    print()
    print("## Memory bandwidth and the floor of one batch-1 step")
    print()
    print(
        "| catalogue | item matrix MB | threads | DRAM read GB/s | floor ms (DRAM) "
        "| same-size read GB/s | floor ms (cache) |"
    )
    print("|---|---|---|---|---|---|---|")
    floors: dict[tuple[str, int], float] = {}
    for name, n in catalogues.items():
        size = (n + 1) * DIM * 4
        for t in threads:
            b = bandwidth[t]
            floors[(name, t)] = size / b["dram"] * 1e3
            print(
                f"| {name} | {size / 1e6:.2f} | {t} | {b['dram'] / 1e9:.1f} "
                f"| {floors[(name, t)]:.4f} | {b['cached'][name] / 1e9:.1f} "
                f"| {size / b['cached'][name] * 1e3:.4f} |"
            )
    print()
    for t in threads:
        print(
            f"# float32 matmul [256,128]x[128,26745] at {t} threads: "
            f"{bandwidth[t]['matmul_flops'] / 1e9:.0f} GFLOP/s"
        )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, n in catalogues.items():
            for model_id in models:
                cell = build_cell(model_id, n)
                result = export_and_check(
                    cell, Path(tmp) / f"{model_id}-{n}", top_k=20, options=ExportOptions()
                )
                if result.status != "ok":
                    print(f"# {model_id} {name}: export {result.status}: {result.error}")
                    continue
                exported = result.exported
                n_columns = exported.n_columns
                runtimes = {
                    "torch naive layout": lambda t, c=cell, n=n_columns: torch_calls(
                        naive_layout(c), c, n
                    ),
                    "torch best layout": lambda t, c=cell, n=n_columns: torch_calls(c, c, n),
                    "ONNX Runtime": lambda t, c=cell, e=exported: ort_calls(
                        e.graphs["cell"], e, c, t
                    ),
                }
                samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
                for _ in range(args.rounds):
                    for t in threads:
                        for runtime, factory in runtimes.items():
                            samples.setdefault((runtime, t), []).append(
                                measure(factory(t), args, t)
                            )
                for (runtime, t), rounds in samples.items():
                    rows.append(
                        {
                            "catalogue": name,
                            "n_items": n,
                            "model": model_id,
                            "runtime": runtime,
                            "threads": t,
                            "p50_ms": median_of(rounds, "p50_ms"),
                            "p95_ms": median_of(rounds, "p95_ms"),
                            "p99_ms": median_of(rounds, "p99_ms"),
                            "qps": statistics.median(r["qps"] for r in rounds),
                            "floor_ms": floors[(name, t)],
                            "parity_max_abs_diff": result.parity.max_abs_diff_scores,
                            "load_average": [r["load_average"] for r in rounds],
                            "other_cpu_share": max(
                                (
                                    r["other_cpu_share"]
                                    for r in rounds
                                    if r["other_cpu_share"] is not None
                                ),
                                default=None,
                            ),
                            "rounds": rounds,
                        }
                    )
                print(f"# done: {model_id} on {name} (load {latency.load_average()})", flush=True)

    print()
    print("## One step (embedding 128): latency at batch 1, throughput at batch 256")
    print()
    print(
        "| catalogue | model | runtime | threads | p50 ms | p95 ms | p99 ms | p99/p50 "
        "| × floor | queries/s @256 | others' CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['catalogue']} | {r['model']} | {r['runtime']} | {r['threads']} "
            f"| {r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['p99_ms'] / r['p50_ms']:.2f} | {r['p50_ms'] / r['floor_ms']:.1f} "
            f"| {r['qps']:,.0f} | {busy(r['other_cpu_share'])} |"
        )
    print()
    print("## Targets: the fastest runtime of each (catalogue, model)")
    print()
    print("| catalogue | model | fastest | p50 ms | floor ms | × floor (≤ 2) | p99/p50 (≤ 2) |")
    print("|---|---|---|---|---|---|---|")
    keys = dict.fromkeys((r["catalogue"], r["model"]) for r in rows)
    for catalogue, model_id in keys:
        mine = [r for r in rows if r["catalogue"] == catalogue and r["model"] == model_id]
        best = min(mine, key=lambda r: r["p50_ms"])
        ratio = best["p50_ms"] / best["floor_ms"]
        tail = best["p99_ms"] / best["p50_ms"]
        print(
            f"| {catalogue} | {model_id} | {best['runtime']}, {best['threads']} threads "
            f"| {best['p50_ms']:.3f} | {best['floor_ms']:.4f} "
            f"| {ratio:.1f} {'✓' if ratio <= 2 else '✗'} | {tail:.2f} {'✓' if tail <= 2 else '✗'} |"
        )
    print()
    print(f"# load average at the end {latency.load_average()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": env,
                    "bandwidth": bandwidth,
                    "floors": {f"{k[0]}@{k[1]}": v for k, v in floors.items()},
                    "rows": rows,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
