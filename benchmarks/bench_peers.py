"""Epoch time of our ``lstm`` / ``mlstm`` against Spotlight and mlstm4reco, in one run.

Run on purpose (it is not part of the test suite), with checkouts of the peers::

    git clone https://github.com/maciejkula/spotlight /tmp/spotlight
    git clone https://github.com/FlorianWilhelm/mlstm4reco /tmp/mlstm4reco
    RECBENCH_DATA=/path/to/data python benchmarks/bench_peers.py \\
        --spotlight /tmp/spotlight --mlstm4reco /tmp/mlstm4reco --rounds 4

The peers' code is imported from those paths at run time; nothing of it is copied here.

What it measures: ML-100K cut into the same 855 windows of 200 items for everyone
(``bench_rnn.spotlight_windows``: cut from the end of each training user's sequence).
Spotlight gets them as its ``SequenceInteractions`` (left-padded to 200, as its
``to_sequence`` makes them); we get them as sequences. One thread. Epochs are
**interleaved**: every round runs one epoch of each contender in turn, so a busy machine
slows all of them alike; the first round is a warm-up and the median of the others is
reported, with wall and CPU time (``time.process_time``) and the load average before and
after. Configurations:

* Spotlight's defaults: embedding 32, batch 256, pointwise loss with 1 negative;
* ours: embedding 120, batch 224, adaptive hinge with 5 negatives (Spotlight's
  ``adaptive_hinge`` with ``num_negative_samples=5``);

each with our runs unsorted and length-sorted (``sort_by_length``). mlstm4reco's
``mLSTMNet`` runs inside Spotlight's ``ImplicitSequenceModel`` (as its experiments do)
against our ``mlstm``.

Shims (applied at run time only, documented in :func:`shim_peers`): stand-ins for
``sklearn.utils`` and ``pkg_resources`` when they are missing; Spotlight's training loop itself runs
unchanged on torch 2.13 as far as this script exercises it. Flush-to-zero
is off for everyone (``--flush-denormal`` turns it on for everyone: Spotlight's left
padding makes subnormal gradients that slow its first epochs).

Our epochs are timed with :func:`recbench.train.trainer.fit_network` at ``epochs=1``
(a fresh optimiser per epoch, as ``bench_rnn`` does); Spotlight's with ``fit`` at
``n_iter=1``, which resumes its model and optimiser.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rnn import build_model, fit_context, markdown_table, spotlight_windows

WINDOW = 200
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "spotlight defaults (dim 32, batch 256, pointwise, 1 negative)": {
        "ours": {"embedding_dim": 32, "batch_size": 256, "loss": "pointwise", "negatives": 1},
        "spotlight": {"embedding_dim": 32, "batch_size": 256, "loss": "pointwise"},
    },
    "our defaults (dim 120, batch 224, adaptive hinge, 5 negatives)": {
        "ours": {"embedding_dim": 120, "batch_size": 224, "loss": "adaptive_hinge", "negatives": 5},
        "spotlight": {
            "embedding_dim": 120,
            "batch_size": 224,
            "loss": "adaptive_hinge",
            "num_negative_samples": 5,
        },
    },
}


def shim_peers(spotlight: Path, mlstm4reco: Path | None) -> None:
    """Make the peers importable from their checkouts (``src/`` layout for mlstm4reco).

    Run-time shims only (nothing in the checkouts is changed):

    * ``spotlight.layers`` imports ``sklearn.utils.murmurhash3_32`` at import time, for
      its Bloom embeddings and ``cross_validation``, neither of which is used here; when
      scikit-learn is not installed a stand-in module that raises if called is put in
      ``sys.modules`` (recbench does not depend on scikit-learn).
    """
    try:
        import sklearn.utils  # noqa: F401
    except ImportError:

        def murmurhash3_32(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("bench_peers: scikit-learn is not installed")

        stand_in = stand_in_module("sklearn.utils")
        stand_in.murmurhash3_32 = murmurhash3_32  # type: ignore[attr-defined]
        sys.modules.setdefault("sklearn", stand_in_module("sklearn"))
        sys.modules["sklearn.utils"] = stand_in
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 81 has none; mlstm4reco's __init__ asks it its version

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name: str) -> Any:
            raise DistributionNotFound(name)

        stand_in = stand_in_module("pkg_resources")
        stand_in.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
        stand_in.get_distribution = get_distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in
    sys.path.insert(0, str(spotlight))
    if mlstm4reco is not None:
        sys.path.insert(0, str(mlstm4reco / "src"))


def stand_in_module(name: str) -> types.ModuleType:
    """An empty module with a spec (torch's tracing rules look specs up by name)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


def left_padded(windows: Any) -> np.ndarray:
    """``[n, WINDOW]`` int64 item ids, each window right-aligned (Spotlight's layout)."""
    out = np.zeros((len(windows), WINDOW), dtype=np.int64)
    for row in range(len(windows)):
        items = windows.items[windows.offsets[row] : windows.offsets[row + 1]]
        out[row, WINDOW - len(items) :] = items
    return out


def spotlight_epoch(
    options: dict[str, Any], windows: Any, representation: str
) -> Callable[[], None]:
    from spotlight.interactions import SequenceInteractions
    from spotlight.sequence.implicit import ImplicitSequenceModel

    interactions = SequenceInteractions(left_padded(windows), num_items=windows.n_items + 1)
    net: Any = representation
    if representation == "mlstm4reco":
        from mlstm4reco.representations import mLSTMNet

        net = mLSTMNet(windows.n_items + 1, embedding_dim=options["embedding_dim"])
    model = ImplicitSequenceModel(
        representation=net, n_iter=1, random_state=np.random.RandomState(0), **options
    )
    return lambda: model.fit(interactions)


def our_epoch(
    registry: Any, model_id: str, options: dict[str, Any], windows: Any
) -> Callable[[], None]:
    from recbench.train.trainer import fit_network

    model = build_model(registry, model_id, {**options, "max_length": WINDOW - 1, "epochs": 1})
    torch.manual_seed(0)
    model.network = model.build_network(windows.n_items)
    ctx = fit_context(windows, torch.device("cpu"), registry)
    return lambda: fit_network(model, model.network, windows, ctx, model.options, name=model_id)


def contenders(
    args: argparse.Namespace, registry: Any, windows: Any
) -> dict[str, Callable[[], None]]:
    out: dict[str, Callable[[], None]] = {}
    for config, sides in CONFIGURATIONS.items():
        out[f"{config} | Spotlight lstm"] = spotlight_epoch(sides["spotlight"], windows, "lstm")
        for sort in (False, True):
            label = f"{config} | our lstm, {'sorted' if sort else 'unsorted'}"
            out[label] = our_epoch(
                registry, "lstm", {**sides["ours"], "sort_by_length": sort}, windows
            )
        if args.mlstm4reco is not None:
            out[f"{config} | mlstm4reco"] = spotlight_epoch(
                sides["spotlight"], windows, "mlstm4reco"
            )
        for sort in (False, True):
            label = f"{config} | our mlstm, {'sorted' if sort else 'unsorted'}"
            out[label] = our_epoch(
                registry, "mlstm", {**sides["ours"], "sort_by_length": sort}, windows
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spotlight", type=Path, required=True, help="a Spotlight checkout")
    parser.add_argument("--mlstm4reco", type=Path, help="an mlstm4reco checkout")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up")
    parser.add_argument("--only", default="", help="run only contenders whose label has this")
    parser.add_argument("--flush-denormal", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(args.flush_denormal)
    shim_peers(args.spotlight, args.mlstm4reco)
    from recbench.registry import discover

    registry = discover()
    windows = spotlight_windows(args.cache, n_windows=855, window=WINDOW)
    runs = {k: v for k, v in contenders(args, registry, windows).items() if args.only in k}
    wall: dict[str, list[float]] = {label: [] for label in runs}
    cpu: dict[str, list[float]] = {label: [] for label in runs}
    loads = [os.getloadavg()]
    for _ in range(args.rounds + 1):
        for label, epoch in runs.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            epoch()
            wall[label].append(time.perf_counter() - started)
            cpu[label].append(time.process_time() - started_cpu)
    loads.append(os.getloadavg())
    rows = []
    for label in runs:
        config, who = label.split(" | ")
        peer = f"{config} | {'mlstm4reco' if 'mlstm' in who else 'Spotlight lstm'}"
        w, c = statistics.median(wall[label][1:]), statistics.median(cpu[label][1:])
        ratio = statistics.median(wall[peer][1:]) / w if peer in wall and peer != label else None
        spread = f"{min(wall[label][1:]):.2f}–{max(wall[label][1:]):.2f}"
        rows.append(
            [config, who, f"{w:.2f}", spread, f"{c:.2f}", "" if ratio is None else f"{ratio:.2f}×"]
        )
    print(
        f"{len(windows)} windows, {windows.n_events} events, 1 thread, flush-to-zero "
        f"{'on' if args.flush_denormal else 'off'}, load average {loads[0][0]:.1f} -> {loads[1][0]:.1f}"
    )
    print(
        markdown_table(
            ["configuration", "contender", "wall s", "range", "CPU s", "peer / ours"], rows
        )
    )
    if args.json:
        args.json.write_text(json.dumps({"wall": wall, "cpu": cpu, "loadavg": loads}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
