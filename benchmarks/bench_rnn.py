"""Training and evaluation speed of the recurrent models (``lstm``, ``gru4rec``, ``mlstm``).

Run on purpose (it is not part of the test suite)::

    RECBENCH_DATA=/path/to/data python benchmarks/bench_rnn.py             # CPU, 1 thread
    python benchmarks/bench_rnn.py --device cuda --rounds 3                 # on a GPU
    python benchmarks/bench_rnn.py --spotlight                              # + the Spotlight check

What it measures, on the users-0001-2999 ratings file of MovieLens 1M
(``file:ml-1m/ratings.users0001-2999.dat.gz``; ``synthetic:ml-1m`` when
``RECBENCH_DATA`` does not hold it), split like a run (80% training users):

* **epoch time** of each model at the same sizes (embedding / hidden 120, batch 224,
  windows of up to 200 items, adaptive hinge with 5 negatives; ``gru4rec`` also with its
  own default training), interleaved round by round in one process so that a busy
  machine slows every model alike; the median over ``--rounds`` epochs is reported,
  with predictions (trained positions) per second and the ratio to ``lstm``;
* **evaluation speed**: iterative next-item queries of the test users per second;
* **peak memory** of one epoch, each model in a fresh process (resident set on the CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU);
* **the arithmetic floor** of an epoch: the matrix-product FLOPs of the recurrent
  layer (input projections and recurrence, forward and backward = 3x forward) and of
  the scoring, over the matrix-product rate measured on this machine, at the positions
  the epoch really computed (padding included) -- a lower bound no implementation of
  the same model can beat;
* with ``--spotlight``, ``lstm`` on ML-100K cut into 855 windows of 200 items
  (Spotlight's ``to_sequence`` windows, cut from the end of each sequence) at Spotlight's
  default sizes (embedding 32, batch 256, pointwise loss with one negative), one
  thread, to compare with Spotlight's LSTM (about 4.3 s per epoch on this kind of
  machine);
* with ``--compile``, the recurrent encoders alone at one fixed shape: ``nn.LSTM``, the
  fused mLSTM, its autograd loop and the loop under ``torch.compile`` (with the cold
  compile time).

``os.getloadavg()`` is recorded before and after every measurement: on a shared
machine, compare numbers only within one run. Prints markdown tables (``--json FILE``
also writes the raw numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULT_PREFIX = "RESULT "
ML1M_FILE = "ml-1m/ratings.users0001-2999.dat.gz"
SIZE = 120
#: Every model trained the same way (the mLSTM article's setup), sizes equal.
SAME_SETUP = {
    "loss": "adaptive_hinge",
    "negatives": 5,
    "batch_size": 224,
    "max_length": 200,
    "learning_rate": 1.5e-2,
}
#: Benchmarked configurations: label -> (model id, options).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstm": ("lstm", {"embedding_dim": SIZE, **SAME_SETUP}),
    "mlstm": ("mlstm", {"embedding_dim": SIZE, **SAME_SETUP}),
    "mlstm-loop": ("mlstm", {"embedding_dim": SIZE, "implementation": "loop", **SAME_SETUP}),
    "gru4rec": (
        "gru4rec",
        {
            "hidden_size": SIZE,
            **SAME_SETUP,
            "in_batch_negatives": False,
            "shared_negatives": False,
            "sampling": "uniform",
        },
    ),
    "gru4rec-separate": (
        "gru4rec",
        {
            "hidden_size": SIZE,
            "embedding": "separate",
            **SAME_SETUP,
            "in_batch_negatives": False,
            "shared_negatives": False,
            "sampling": "uniform",
        },
    ),
    "gru4rec-default": ("gru4rec", {"hidden_size": SIZE}),
}


def peak_rss_mib() -> float:
    """Peak resident memory of this process (since :func:`reset_peak_rss`), in MiB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mib()


def reset_peak_rss() -> None:
    """Start the peak over from the current resident set (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def default_dataset() -> str:
    root = os.environ.get("RECBENCH_DATA")
    if root and (Path(root) / ML1M_FILE).is_file():
        return f"file:{ML1M_FILE}"
    return "synthetic:ml-1m"


def settings_for(cache: Path) -> Any:
    from recbench.config.settings import Settings

    root = os.environ.get("RECBENCH_DATA")
    data_root = Path(root) if root else cache / "no-raw-data"
    return Settings(data_root=data_root, cache_root=cache / "cache", offline=True)


def prepare(dataset: str, cache: Path, options: dict[str, str] | None = None) -> tuple[Any, Any]:
    """(registry, split) of ``dataset`` (with the dataset ``options``) as a run prepares
    it (seed 0)."""
    from recbench.data.prepare import prepare_dataset
    from recbench.data.preprocess import PreprocessOptions
    from recbench.data.splits import SplitOptions, make_split
    from recbench.progress import Progress
    from recbench.registry import discover

    registry = discover()
    data = prepare_dataset(
        dataset, options or {}, PreprocessOptions(), registry, settings_for(cache),
        Progress.silent(),
    )  # fmt: skip
    return registry, make_split(data.sequences, SplitOptions(), 0)


def build_model(registry: Any, label: str, extra: dict[str, Any]) -> Any:
    from recbench.config.options import parse_options

    model_id, options = CONFIGS.get(label, (label, {}))
    info = registry.get("model", model_id)
    return info.cls(parse_options(info.cls.Options, {**options, **extra}, owner=label))


def fit_context(train: Any, device: torch.device, registry: Any) -> Any:
    from recbench.contracts import FitContext

    return FitContext(
        n_items=train.n_items,
        device=device,
        seed=0,
        item_counts=train.item_counts(),
        registry=registry,
    )


def computed_positions(train: Any, options: Any) -> tuple[int, int]:
    """(real, computed) positions of an epoch: transitions, and batch x width summed
    over the padded mini-batches (what the recurrence really runs over)."""
    from recbench.train.trainer import epoch_batches, training_windows

    _, lengths = training_windows(train, options.max_length, options.windows)
    batches = epoch_batches(lengths, options.batch_size, np.random.default_rng(0), True)
    computed = sum(len(b) * (int(lengths[b].max()) - 1) for b in batches)
    return int((lengths - 1).sum()), computed


def forward_flops_per_position(
    label: str, options: Any, n_items: int
) -> tuple[float, float, float]:
    """Matrix-product FLOPs of one forward position: (recurrent layer, scoring of the
    per-prediction candidates -- every item for ``cce`` --, scoring of in-batch
    negatives)."""
    model_id = CONFIGS.get(label, (label, {}))[0]
    if model_id == "lstm":
        d = options.embedding_dim
        layer = 2 * d * 4 * d * 2  # input projection + recurrence
    elif model_id == "mlstm":
        d = options.embedding_dim
        layer = 2 * d * 5 * d + (2 * d * d + 2 * d * 4 * d)  # projections + W_mh, W_gm
    else:
        d = options.hidden_size
        inputs = 0 if options.embedding == "none" else 2 * options.embedding_dim * 3 * d
        layer = inputs + 2 * d * 3 * d
    if options.loss == "cce":
        return layer, 2 * d * (n_items + 1), 0.0
    in_batch = options.batch_size if options.in_batch_negatives else 0
    return layer, 2 * d * (1 + options.negatives), 2 * d * in_batch


def matmul_rate(device: torch.device) -> dict[str, float]:
    """GFLOP/s of float32 matrix products shaped like a recurrent step (224 x 120 times
    120 x 480) and like a whole-batch input projection (44,800 x 120 times 120 x 480)."""
    rates = {}
    for name, (m, k, n) in {"step": (224, 120, 480), "batch": (44_800, 120, 480)}.items():
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        c = torch.empty(m, n, device=device)  # a fresh output would time page faults
        repeats = 200 if name == "step" else 5
        for _ in range(3):
            torch.mm(a, b, out=c)
        synchronize(device)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b, out=c)
            synchronize(device)
            best = min(best, (time.perf_counter() - started) / repeats)
        rates[name] = 2 * m * k * n / best / 1e9
    return rates


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(
    labels: list[str], registry: Any, split: Any, device: torch.device, rounds: int, extra: dict
) -> dict[str, dict[str, Any]]:
    """Interleaved single epochs of every model; per model the epoch records."""
    from recbench.train.trainer import fit_network

    train = split.train
    ctx = fit_context(train, device, registry)
    models = {}
    for label in labels:
        model = build_model(registry, label, extra)
        torch.manual_seed(0)
        model.network = model.build_network(train.n_items).to(device)
        models[label] = model
    records: dict[str, list[Any]] = {label: [] for label in labels}
    loads: list[tuple[float, ...]] = [os.getloadavg()]
    for _ in range(rounds + 1):  # the first round warms up (allocations, caches)
        for label, model in models.items():
            options = replace(model.options, epochs=1)
            synchronize(device)
            history = fit_network(model, model.network, train, ctx, options, name=label)
            synchronize(device)
            records[label].append(history.epochs[0])
    loads.append(os.getloadavg())
    out = {}
    for label, model in models.items():
        measured = records[label][1:]
        seconds = statistics.median(r.seconds for r in measured)
        real, computed = computed_positions(train, model.options)
        out[label] = {
            "epoch_seconds": seconds,
            "epoch_seconds_all": [r.seconds for r in records[label]],
            "predictions_per_second": real / seconds,
            "positions": real,
            "computed_positions": computed,
            "forward_flops_per_position": forward_flops_per_position(
                label, model.options, train.n_items
            ),
            "loadavg": loads,
        }
        out[label]["model"] = model
    return out


def eval_speed(
    models: dict[str, Any], registry: Any, split: Any, device: torch.device, n_queries: int
) -> dict[str, float]:
    """Iterative queries per second (at most ``n_queries`` of the test users), interleaved."""
    from recbench.data.protocols import Queries, build_queries
    from recbench.progress import Progress
    from recbench.tasks.ranking.evaluation import evaluate

    queries = build_queries("iterative", split.test)
    keep = slice(0, min(n_queries, len(queries)))
    queries = Queries(
        "iterative",
        queries.sequences,
        queries.row[keep],
        queries.input_length[keep],
        queries.n_targets[keep],
    )
    metric = registry.get("metric", "mrr").cls(registry.get("metric", "mrr").cls.Options())
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(3):
        for label, model in models.items():
            synchronize(device)
            started = time.perf_counter()
            evaluate(
                model,
                queries,
                {"mrr": metric},
                cutoffs=(20,),
                item_counts=split.train.item_counts(),
                device=device,
                exclude_seen=True,
                progress=Progress.silent(),
            )
            synchronize(device)
            times[label].append(time.perf_counter() - started)
    return {label: len(queries) / min(t) for label, t in times.items()}


def child_peak_memory(args: argparse.Namespace, label: str) -> dict[str, float]:
    """Peak memory of one epoch of ``label`` in a fresh process."""
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([label, args.dataset, args.device, args.threads, str(args.cache)]),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"no result from the child process for {label}")


def run_child(spec: str) -> None:
    from recbench.train.trainer import fit_network

    label, dataset, device_name, threads, cache = json.loads(spec)
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    registry, split = prepare(dataset, Path(cache))
    model = build_model(registry, label, {"epochs": 1})
    torch.manual_seed(0)
    model.network = model.build_network(split.train.n_items).to(device)
    reset_peak_rss()
    before = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fit_network(model, model.network, split.train, fit_context(split.train, device, registry),
                model.options, name=label)  # fmt: skip
    result = {"rss_before_mib": before, "rss_peak_mib": peak_rss_mib()}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(RESULT_PREFIX + json.dumps(result))


def spotlight_windows(cache: Path, n_windows: int = 855, window: int = 200) -> Any:
    """ML-100K cut into ``n_windows`` windows of ``window`` items (cut from the end of
    each user's sequence, users in a seeded random order), as one sequence per window."""
    from recbench.data.interactions import Sequences

    registry, split = prepare("ml-100k", cache)
    del registry
    sequences = split.train  # users of the training split; more are added if needed
    full = sequences
    starts: list[int] = []
    lengths: list[int] = []
    for row in np.random.default_rng(0).permutation(len(full)):
        first, end = int(full.offsets[row]), int(full.offsets[row + 1])
        while end > first and len(starts) < n_windows:
            begin = max(first, end - window)
            starts.append(begin)
            lengths.append(end - begin)
            end = begin
        if len(starts) == n_windows:
            break
    starts_a, lengths_a = np.array(starts), np.array(lengths)
    from recbench.data.interactions import ragged_indices

    offsets = np.concatenate([[0], np.cumsum(lengths_a)])
    return Sequences(
        offsets=offsets,
        items=full.items[ragged_indices(starts_a, lengths_a)],
        users=np.arange(len(starts_a)),
        n_items=full.n_items,
    )


def spotlight_check(args: argparse.Namespace) -> dict[str, Any]:
    from recbench.registry import discover
    from recbench.train.trainer import fit_network

    torch.set_num_threads(1)
    registry = discover()
    windows = spotlight_windows(args.cache)
    ctx = fit_context(windows, torch.device("cpu"), registry)
    results: dict[str, Any] = {"windows": len(windows), "events": windows.n_events}
    spotlight_sizes = {
        "embedding_dim": 32,
        "batch_size": 256,
        "loss": "pointwise",
        "negatives": 1,
        "max_length": 199,  # windows of 200 items: 199 inputs predicting the next item
        "epochs": 1,
    }
    models = {}
    for sort in (False, True):
        model = build_model(registry, "lstm", {**spotlight_sizes, "sort_by_length": sort})
        torch.manual_seed(0)
        model.network = model.build_network(windows.n_items)
        models[f"lstm (sort_by_length={sort})"] = model
    times: dict[str, list[float]] = {label: [] for label in models}
    loads = [os.getloadavg()]
    for _ in range(args.rounds + 1):
        for label, model in models.items():
            history = fit_network(model, model.network, windows, ctx, model.options, name=label)
            times[label].append(history.epochs[0].seconds)
    loads.append(os.getloadavg())
    results["epoch_seconds"] = {label: statistics.median(t[1:]) for label, t in times.items()}
    results["loadavg"] = loads
    return results


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="default: the ML-1M users file")
    parser.add_argument("--models", default="lstm,mlstm,mlstm-loop,gru4rec,gru4rec-default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="measured epochs per model")
    parser.add_argument("--eval-queries", type=int, default=4000)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--spotlight", action="store_true", help="also the Spotlight check")
    parser.add_argument(
        "--compile", action="store_true", help="also the encoders alone, with torch.compile"
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child)
        return 0
    args.dataset = args.dataset or default_dataset()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = args.cache or Path(tmp)
        return report(args, device)


def report(args: argparse.Namespace, device: torch.device) -> int:
    labels = [label.strip() for label in args.models.split(",") if label.strip()]
    started_load = os.getloadavg()
    registry, split = prepare(args.dataset, args.cache)
    rates = matmul_rate(device)
    extra: dict[str, Any] = {"bf16": True} if args.bf16 else {}
    timing = time_epochs(labels, registry, split, device, args.rounds, extra)
    models = {label: entry.pop("model") for label, entry in timing.items()}
    speeds = eval_speed(models, registry, split, device, args.eval_queries)
    memory = {} if args.no_memory else {label: child_peak_memory(args, label) for label in labels}
    info = {
        "dataset": args.dataset,
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "threads": args.threads,
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "train_users": len(split.train),
        "matmul_gflops": rates,
        "loadavg_start": started_load,
        "loadavg_end": os.getloadavg(),
    }
    precision = ", bf16 autocast" if args.bf16 else ""
    print(
        f"\n## Recurrent models: {args.dataset}, {info['device']}{precision}, "
        f"{args.threads} thread(s)\n"
    )
    print(
        f"torch {torch.__version__}; {len(split.train):,} training users; matmul "
        f"{rates['step']:.0f} GFLOP/s (step-sized), {rates['batch']:.0f} GFLOP/s "
        f"(batch-sized); load average {started_load[0]:.2f} at the start, "
        f"{info['loadavg_end'][0]:.2f} at the end\n"
    )
    base = timing.get("lstm", {}).get("epoch_seconds")
    rows = []
    for label, entry in timing.items():
        layer, sampled, in_batch = entry["forward_flops_per_position"]
        # the layer and in-batch scores run over padding too, sampled scores do not
        flops = 3 * (
            (layer + in_batch) * entry["computed_positions"] + sampled * entry["positions"]
        )
        floor = flops / (max(rates.values()) * 1e9)
        entry["floor_seconds"] = floor
        mem = memory.get(label, {})
        if "cuda_peak_mib" in mem:
            peak = f"{mem['cuda_peak_mib']:,.0f}"
        elif mem:
            peak = (
                f"{mem['rss_peak_mib']:,.0f} (+{mem['rss_peak_mib'] - mem['rss_before_mib']:,.0f})"
            )
        else:
            peak = ""
        rows.append(
            [
                label,
                f"{entry['epoch_seconds']:.2f}",
                f"{entry['epoch_seconds'] / base:.2f}" if base else "",
                f"{entry['predictions_per_second']:,.0f}",
                f"{floor:.2f}",
                f"{floor / entry['epoch_seconds']:.0%}",
                f"{speeds[label]:,.0f}",
                peak,
                " / ".join(f"{x:.1f}" for x in entry["epoch_seconds_all"]),
            ]
        )
    print(
        markdown_table(
            [
                "model",
                "epoch s (median)",
                "vs lstm",
                "predictions/s",
                "floor s",
                "floor / time",
                "eval queries/s",
                "peak MiB (+ training)",
                "all epochs s (first = warm-up)",
            ],
            rows,
        )
    )
    results: dict[str, Any] = {"info": info, "timing": timing, "eval": speeds, "memory": memory}
    if args.spotlight:
        spotlight = spotlight_check(args)
        results["spotlight"] = spotlight
        print(
            f"\n## lstm on ML-100K in {spotlight['windows']} windows of 200 items "
            f"({spotlight['events']:,} events), Spotlight's sizes, 1 thread\n"
        )
        print(
            markdown_table(
                ["configuration", "epoch s (median)", "vs Spotlight's 4.3 s"],
                [
                    [k, f"{v:.2f}", f"{4.3 / v:.1f}x faster"]
                    for k, v in spotlight["epoch_seconds"].items()
                ],
            )
        )
        print(
            f"\nload average {spotlight['loadavg'][0][0]:.2f} -> {spotlight['loadavg'][1][0]:.2f}"
        )
    if args.compile:
        results["compile"] = compile_comparison(device, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def compile_comparison(device: torch.device, rounds: int) -> dict[str, Any]:
    """The recurrent encoders alone at one fixed shape (batch 224 x 200 steps, size 120):
    ``nn.LSTM``, the fused mLSTM, its autograd loop, and the loop under
    ``torch.compile``, forward and backward, interleaved. One shape only because the
    compiled loop is specialised to the number of steps: every new length compiles
    again (and after ``torch._dynamo.config.recompile_limit`` lengths it runs eagerly).
    """
    from recbench_rnn.recurrence import mlstm_fused, mlstm_loop

    steps, batch, d = 200, 224, SIZE
    torch.manual_seed(0)
    x = torch.randn(steps, batch, d, device=device, requires_grad=True)
    lstm = torch.nn.LSTM(d, d).to(device)
    project = torch.nn.Linear(d, 5 * d).to(device)
    w_mh = (0.1 * torch.randn(d, d, device=device)).requires_grad_()
    b_mh = torch.zeros(d, device=device, requires_grad=True)
    w_gm = (0.1 * torch.randn(4 * d, d, device=device)).requires_grad_()
    h0 = torch.zeros(batch, d, device=device)

    def mlstm(recurrence: Any) -> Any:
        def run() -> Any:
            p = project(x)
            return recurrence(p[..., :d], p[..., d:], h0, h0, w_mh, b_mh, w_gm)

        return run

    variants = {
        "lstm (nn.LSTM)": lambda: lstm(x)[0],
        "mlstm fused": mlstm(mlstm_fused),
        "mlstm loop": mlstm(mlstm_loop),
        "mlstm loop + torch.compile": torch.compile(mlstm(mlstm_loop)),
    }
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {label: [] for label in variants}
    loads = [os.getloadavg()]
    for repeat in range(rounds + 1):
        for label, run in variants.items():
            synchronize(device)
            started = time.perf_counter()
            run().square().mean().backward()
            synchronize(device)
            elapsed = time.perf_counter() - started
            if repeat == 0:
                first[label] = elapsed
            else:
                times[label].append(elapsed)
    loads.append(os.getloadavg())
    median = {label: statistics.median(t) for label, t in times.items()}
    base = median["lstm (nn.LSTM)"]
    print(f"\n## Encoders alone, batch {batch} x {steps} steps, size {d}, forward + backward\n")
    print(
        markdown_table(
            ["encoder", "ms per batch (median)", "vs nn.LSTM", "first call s"],
            [
                [k, f"{v * 1000:.0f}", f"{v / base:.2f}", f"{first[k]:.1f}"]
                for k, v in median.items()
            ],
        )
    )
    print(f"\nload average {loads[0][0]:.2f} -> {loads[1][0]:.2f}")
    return {"median_seconds": median, "first_seconds": first, "loadavg": loads}


if __name__ == "__main__":
    sys.exit(main())
